"""The bundle manifest: everything the runtime needs to know, in one file.

The manifest travels with every exported artifact. The runtime derives its
preprocessing, output names, class names, Grad-CAM definition and decision
thresholds from it and from nothing else, so a bundle exported from other
checkpoints (another input size, other normalisation) runs unchanged.

It is plain JSON (``manifest.json``) read into frozen dataclasses; unknown
schema versions and missing fields are refused with a message that says how
to get a bundle this version understands.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olvf.errors import BundleError
from olvf.runtime.crops import CropSettings
from olvf.runtime.detection import LAYOUTS, DetectorSettings
from olvf.runtime.radiograph import DisplayConversion

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
CLASS_NAMES: tuple[str, ...] = ("normal", "old", "fresh")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class Preprocessing:
    """How a grayscale crop becomes the network input.

    A crop (any size, gray values already mapped to ``[0, value_max]``) is
    resized to ``input_size`` with ``interpolation``, divided by
    ``value_max``, replicated to three channels (``channels ==
    "gray_to_rgb"``), then normalised per channel with ``mean`` and ``std``.
    """

    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    channels: str = "gray_to_rgb"
    value_max: float = 255.0

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise BundleError(
                f"manifest: unknown interpolation {self.interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}"
            )
        if self.channels != "gray_to_rgb":
            raise BundleError(f"manifest: unknown channel handling {self.channels!r}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise BundleError(f"manifest: input_size {self.input_size} must be (H, W), each >= 32")
        if any(s <= 0 for s in self.std):
            raise BundleError("manifest: std values must be positive")


@dataclass(frozen=True)
class GradCamSpec:
    """Where and how a model's Grad-CAM is taken (see README, "Grad-CAM")."""

    layer: str
    feature_shape: tuple[int, int, int]
    definition: str


@dataclass(frozen=True)
class ModelSpec:
    """One classifier of the ensemble."""

    name: str
    architecture: str
    preprocessing: Preprocessing
    gradcam: GradCamSpec
    probabilities_output: str
    class_maps_output: str
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnsembleSpec:
    """How the models' outputs are combined."""

    rule: str
    models: tuple[str, ...]
    cam_fusion: str
    probabilities_output: str = "probabilities"


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX file of the bundle."""

    role: str
    file: str
    precision: str
    opset: int
    input_name: str
    input_shape: tuple[int | str, ...]
    output_names: tuple[str, ...]
    max_batch: int

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise BundleError(f"manifest: graph {self.file}: unknown precision {self.precision!r}")
        if self.max_batch < 1:
            raise BundleError(f"manifest: graph {self.file}: max_batch must be >= 1")


@dataclass(frozen=True)
class DetectorSpec:
    """The vertebra detector: its input, classes, output layout and decision thresholds."""

    input_size: tuple[int, int]
    stride: int
    names: tuple[str, ...]
    layout: str
    conf: float = 0.25
    iou: float = 0.45
    duplicate_iou: float = 0.6
    max_det: int = 20
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise BundleError(
                f"manifest: unknown detector layout {self.layout!r}; expected one of {', '.join(LAYOUTS)}"
            )
        if not self.names:
            raise BundleError("manifest: detector has no class names")
        if any(s % self.stride for s in self.input_size):
            raise BundleError(f"manifest: detector input {self.input_size} is not a multiple of stride {self.stride}")

    @property
    def settings(self) -> DetectorSettings:
        return DetectorSettings(
            names=self.names,
            layout=self.layout,
            conf=self.conf,
            iou=self.iou,
            duplicate_iou=self.duplicate_iou,
            max_det=self.max_det,
        )


@dataclass(frozen=True)
class EngineSpec:
    """A TensorRT engine: valid only for the TensorRT version and GPU that built it."""

    role: str
    file: str
    source_graph: str
    source_sha256: str
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile: dict[str, list[int]] = field(default_factory=dict)
    layers: int = 0
    half_layers: int = 0  # layers with an FP16 output, from the engine inspector
    built: str = ""  # UTC time of the build

    @property
    def max_batch(self) -> int:
        return int(self.profile["max"][0]) if self.profile.get("max") else 1


@dataclass(frozen=True)
class Manifest:
    """The whole ``manifest.json``."""

    classes: tuple[str, ...]
    ensemble: EnsembleSpec
    models: tuple[ModelSpec, ...]
    graphs: tuple[GraphSpec, ...]
    files: dict[str, str]
    precision: str
    producer: dict[str, str]
    parity: dict[str, Any]
    operating_points: dict[str, float]
    demo: bool = False
    created: str = ""
    detector: DetectorSpec | None = None
    crops: CropSettings = CropSettings()
    display: DisplayConversion = DisplayConversion()
    engines: tuple[EngineSpec, ...] = ()
    schema_version: int = SCHEMA_VERSION
    kind: str = "olvf-bundle"

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise BundleError(f"manifest: no model named {name!r} (have {', '.join(self.model_names)})")

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.models)

    @property
    def preprocessing(self) -> Preprocessing:
        """The single preprocessing of the fused graph's ``crops`` input."""
        if not self.models:
            raise BundleError("this bundle has no classifiers; export one with --resnet50 --densenet161 --resnext50")
        return self.models[0].preprocessing

    def has(self, role: str) -> bool:
        return any(g.role == role for g in self.graphs)

    def graph(self, role: str, precision: str | None = None) -> GraphSpec:
        """The graph for ``role``; ``precision=None`` prefers FP32 (the CPU choice)."""
        candidates = [g for g in self.graphs if g.role == role]
        if precision is not None:
            candidates = [g for g in candidates if g.precision == precision]
        if not candidates:
            have = ", ".join(f"{g.role}/{g.precision}" for g in self.graphs) or "none"
            wanted = role if precision is None else f"{role}/{precision}"
            raise BundleError(
                f"bundle has no {wanted} graph (it has: {have}); "
                f"re-export with olvf-export --precision {precision or 'fp32'}"
            )
        return sorted(candidates, key=lambda g: PRECISIONS.index(g.precision))[0]

    def graph_for(self, role: str, precision: str | None) -> GraphSpec:
        """The graph of ``precision`` when the bundle has one, else the default for ``role``."""
        exact = [g for g in self.graphs if g.role == role and g.precision == precision]
        return exact[0] if exact else self.graph(role)

    def to_json(self) -> str:
        raw = dataclasses.asdict(self)
        raw["display"] = self.display.to_dict()
        return json.dumps(raw, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> Manifest:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(
                f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}); re-export the bundle"
            ) from None
        return manifest_from_dict(raw, source)

    def validate(self) -> None:
        """Cross-field checks that single dataclasses cannot make."""
        if tuple(self.classes) != CLASS_NAMES:
            raise BundleError(f"manifest: classes {list(self.classes)} are not {list(CLASS_NAMES)}")
        if not self.models and self.detector is None:
            raise BundleError("manifest: no models and no detector")
        if self.has("ensemble") != bool(self.models):
            raise BundleError("manifest: classifier models and ensemble graphs must come together")
        if self.has("detector") != (self.detector is not None):
            raise BundleError("manifest: detector settings and detector graphs must come together")
        for spec in self.models[1:]:
            first = self.models[0].preprocessing
            if spec.preprocessing != first:
                raise BundleError(
                    f"manifest: model {spec.name} preprocesses differently from {self.models[0].name}, "
                    "but the fused graph has one input"
                )
        if self.models and set(self.ensemble.models) != set(self.model_names):
            raise BundleError("manifest: ensemble models do not match the listed models")
        for graph in self.graphs:
            if graph.file not in self.files:
                raise BundleError(f"manifest: graph {graph.file} has no sha256 entry")
        for engine in self.engines:
            if engine.file not in self.files:
                raise BundleError(f"manifest: engine {engine.file} has no sha256 entry")


def _build(cls: type, raw: Any, where: str) -> Any:
    """Construct a dataclass from a dict, turning lists into tuples where typed so."""
    if not isinstance(raw, dict):
        raise BundleError(f"manifest: {where} must be an object")
    names = {f.name for f in dataclasses.fields(cls)}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - set(raw))
    if missing:
        raise BundleError(f"manifest: {where} lacks {', '.join(missing)}; re-export the bundle with this olvf version")
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            continue  # written by a newer minor version; ignoring keeps old runtimes working
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise BundleError(f"manifest: {where} is malformed ({exc})") from None


def manifest_from_dict(raw: Any, source: str = MANIFEST_NAME) -> Manifest:
    if not isinstance(raw, dict) or raw.get("kind") != "olvf-bundle":
        raise BundleError(f"{source} is not an olvf bundle manifest")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{source} has schema version {version}, this olvf reads {SCHEMA_VERSION}; "
            "re-export the bundle with this olvf version or install the olvf that wrote it"
        )
    data = dict(raw)
    absent = [key for key in ("models", "graphs", "ensemble") if key not in data]
    if absent:
        raise BundleError(f"{source} lacks {', '.join(absent)}; re-export the bundle with this olvf version")
    try:
        models = []
        for i, m in enumerate(data["models"]):
            m = dict(m)
            p = dict(m["preprocessing"])
            for key in ("input_size", "mean", "std"):
                p[key] = tuple(p[key])
            m["preprocessing"] = _build(Preprocessing, p, f"models[{i}].preprocessing")
            g = dict(m["gradcam"])
            g["feature_shape"] = tuple(g["feature_shape"])
            m["gradcam"] = _build(GradCamSpec, g, f"models[{i}].gradcam")
            m["source"] = dict(m.get("source", {}))
            models.append(_build(ModelSpec, m, f"models[{i}]"))
        data["models"] = tuple(models)
        data["ensemble"] = _build(EnsembleSpec, data["ensemble"], "ensemble")
        if data.get("detector") is not None:
            d = dict(data["detector"])
            d["input_size"] = tuple(d["input_size"])
            d["names"] = tuple(d["names"])
            d["source"] = dict(d.get("source", {}))
            data["detector"] = _build(DetectorSpec, d, "detector")
        if "display" in data:
            data["display"] = DisplayConversion.from_dict(data["display"], f"{source}: display")
        if "crops" in data:
            data["crops"] = _build(CropSettings, data["crops"], "crops")
        data["graphs"] = tuple(_build(GraphSpec, g, f"graphs[{i}]") for i, g in enumerate(data["graphs"]))
        engines = []
        for i, e in enumerate(data.get("engines", [])):
            e = dict(e)
            e["profile"] = {k: list(v) for k, v in dict(e.get("profile", {})).items()}
            engines.append(_build(EngineSpec, e, f"engines[{i}]"))
        data["engines"] = tuple(engines)
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{source} is incomplete (missing {exc}); re-export the bundle") from None
    manifest = _build(Manifest, data, "manifest")
    manifest.validate()
    return manifest


def read_manifest(bundle_dir: Path) -> Manifest:
    path = Path(bundle_dir) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(
            f"{bundle_dir} is not a model bundle (no {MANIFEST_NAME}); "
            "create one with olvf-export --out DIR, or olvf-export --demo --out DIR"
        )
    return Manifest.from_json(path.read_text(encoding="utf-8"), str(path))
