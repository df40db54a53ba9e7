"""The bundle manifest: everything the runtime needs to know, in one file.

The manifest travels with every exported artifact. The runtime derives its
preprocessing, output names, class names, Grad-CAM definition and decision
thresholds from it and from nothing else, so a bundle exported from other
checkpoints (another input size, other normalisation) runs unchanged.

It is plain JSON (``manifest.json``) read into frozen dataclasses (the
processing settings among them live in :mod:`olvf.runtime.bundle.config`); unknown
schema versions and missing or malformed fields are refused with a message
that says how to get a bundle this version understands. Schema 1 (olvf
before the study pipeline) is still read: its crops' ``value_max`` 255 is
the display scale of schema 2, and its detector gets the defaults it was
decoded with. Manifests are always written in the current schema.

Integrity: olvf writes an ``integrity`` record into every manifest it
writes (export, engines built on the target, an operating point chosen by
olvf-validate): the sha256 of the manifest's canonical JSON (keys sorted, no
white space, the record itself left out). A manifest whose record is missing
or does not match was changed by something other than olvf (a hand edit of
``"demo": false`` or of the operating point) and is refused, as a graph whose
sha256 does not match is. This catches changes, not a forger, who can
recompute the hash: against that, bundles are signed
(:mod:`olvf.runtime.bundle.signing`).

Imports only the standard library and this package's configuration, so
reading a manifest loads neither pydicom nor OpenCV.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import olvf.json_text as json_text
from olvf.errors import BundleError
from olvf.runtime.bundle.config import CropSettings, DetectorSpec, DisplayConversion, IntendedUse, Preprocessing
from olvf.vocabulary import CLASSES

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
MANIFEST_NAME = "manifest.json"
#: Where every command looks for a bundle when none is named: where the Quick start builds the demo.
DEFAULT_BUNDLE = Path("engines/demo")
CLASS_NAMES = CLASSES
PRECISIONS = ("fp32", "fp16", "int8")
#: how a graph is stored: ONNX (one file), or OpenVINO IR (``file`` the .xml, ``weights`` the .bin)
GRAPH_FORMATS = ("onnx", "openvino-ir")
CLASSIFIER_FLAGS = "--resnet50 R.pt --densenet161 D.pt --resnext50 X.pt"  # what adds classifiers to a bundle
INTEGRITY_KEY = "integrity"


def canonical_manifest(raw: dict[str, Any]) -> bytes:
    """The bytes a manifest's integrity hash and signature cover: its JSON without the integrity record."""
    body = {key: value for key, value in raw.items() if key != INTEGRITY_KEY}
    return json_text.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_digest(raw: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_manifest(raw)).hexdigest()


def seal_manifest(raw: dict[str, Any]) -> str:
    """``manifest.json`` text for ``raw`` with its integrity record (re)computed: how olvf writes every manifest."""
    body = {key: value for key, value in raw.items() if key != INTEGRITY_KEY}
    body[INTEGRITY_KEY] = {
        "sha256": manifest_digest(body),
        "of": "the manifest as JSON with sorted keys, no white space, without this record",
    }
    return json_text.dumps(body, indent=2, sort_keys=False) + "\n"


def check_integrity(raw: Any, source: str) -> None:
    """Refuse a manifest that olvf did not write as it is (see the module docstring)."""
    if not isinstance(raw, dict):
        return  # manifest_from_dict says what is wrong
    record = raw.get(INTEGRITY_KEY)
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise BundleError(
            f"{source} has no integrity record: written by an olvf older than this one, or by hand; "
            "re-export the bundle with this olvf version"
        )
    if record["sha256"] != manifest_digest(raw):
        raise BundleError(
            f"{source} was changed after olvf wrote it (its integrity sha256 does not match; a hand edit?); "
            "undo the change or re-export the bundle (settings belong in olvf-export's options, the operating "
            "point in olvf-validate --write-operating-point)"
        )


def bundle_member(name: Any, what: str) -> str:
    """A file name the manifest lists: a plain relative path that stays inside the bundle folder."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a file name, got {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or name.startswith("~"):
        raise ValueError(f"{what} {name!r} points outside the bundle folder")
    return name


@dataclass(frozen=True)
class GradCamSpec:
    """Where and how a model's Grad-CAM is taken (see docs/explanation/gradcam.md)."""

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
    #: the pooled features the head reads (N, K); None in bundles exported before the graph had them
    features_output: str | None = None


@dataclass(frozen=True)
class EnsembleSpec:
    """How the models' outputs are combined."""

    rule: str
    models: tuple[str, ...]
    cam_fusion: str
    probabilities_output: str = "probabilities"


@dataclass(frozen=True)
class GraphSpec:
    """One graph of the bundle: an ONNX file, or an OpenVINO IR pair (the INT8 graphs).

    ``quantization`` (INT8 graphs only): how it was quantised and on what
    calibration set (its size and hash), see :mod:`olvf.export.quantize`.
    Bundles written before these fields existed read as ONNX, unquantised.
    """

    role: str
    file: str
    precision: str
    opset: int
    input_name: str
    input_shape: tuple[int | str, ...]
    output_names: tuple[str, ...]
    max_batch: int
    format: str = "onnx"
    weights: str = ""
    quantization: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bundle_member(self.file, "graph file")
        if self.precision not in PRECISIONS:
            raise ValueError(f"graph {self.file}: unknown precision {self.precision!r}")
        if self.format not in GRAPH_FORMATS:
            raise ValueError(f"graph {self.file}: unknown format {self.format!r}")
        if (self.format == "openvino-ir") != bool(self.weights):
            raise ValueError(f"graph {self.file}: an OpenVINO IR graph names its weights file, an ONNX graph none")
        if self.weights:
            bundle_member(self.weights, "graph weights file")
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ValueError(f"graph {self.file}: max_batch must be a whole number >= 1, got {self.max_batch!r}")

    @property
    def members(self) -> tuple[str, ...]:
        """Every file the graph is made of."""
        return (self.file, self.weights) if self.weights else (self.file,)


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

    def __post_init__(self) -> None:
        bundle_member(self.file, "engine file")
        bundle_member(self.source_graph, "engine source graph")

    @property
    def max_batch(self) -> int:
        return int(self.profile["max"][0]) if self.profile.get("max") else 1


@dataclass(frozen=True)
class VerifiedRoute:
    """A reduced-precision CPU route that kept the bundle's decisions on a labelled set (see
    :mod:`olvf.runtime.runners.verified_routes`): valid on the kind of CPU it was checked on, for the graphs it ran."""

    route: str  # e.g. "openvino-int8"
    backend: str
    precision: str
    cpu: dict[str, Any]  # olvf.runtime.runners.cpu.cpu_kind() of the machine that checked it
    graphs: dict[str, str]  # graph file -> sha256 it ran
    figures: dict[str, Any]
    evidence: str  # what it was checked on (a labelled set's size and hash, or the demo's phantoms)
    verified: str  # UTC time


@dataclass(frozen=True)
class DomainSpec:
    """The bundle's own domain (:mod:`olvf.runtime.bundle.domain`): how far a study may lie, as the bundle's own
    networks see it, from the in-domain studies it was fitted and checked on.

    ``file``: the statistics (``.npz``), listed and hashed in ``files`` like every file of the bundle.
    ``fitted_on`` and ``held_out`` say what in words and counts (studies, vertebrae, false-rejection rates),
    never with file names, which can identify patients. Bundles without the record have no domain check.
    """

    file: str
    method: str
    version: int
    models: tuple[str, ...]
    components: int
    threshold: float
    threshold_rule: str  # how the threshold was set on held-out in-domain studies, in words
    fitted_on: dict[str, Any]
    held_out: dict[str, Any]
    created: str = ""  # UTC time

    def __post_init__(self) -> None:
        bundle_member(self.file, "domain statistics file")
        for name, value in (("version", self.version), ("components", self.components)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"domain {name} must be a whole number >= 1, got {value!r}")
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold < float("inf"):
            raise ValueError(f"domain threshold must be a positive number, got {threshold!r}")
        for name in ("fitted_on", "held_out"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"domain {name} must be an object")


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
    #: earlier fresh operating points, newest last, each with when, why and by what it was replaced
    operating_point_history: tuple[dict[str, Any], ...] = ()
    verified_routes: tuple[VerifiedRoute, ...] = ()
    #: the images the bundle is for (olvf.runtime.steps.applicability); manifests without it get the study's defaults
    intended_use: IntendedUse = field(default_factory=IntendedUse)
    #: the bundle's own domain (olvf.runtime.bundle.domain); None: no domain check (bundles without one, or older)
    domain: DomainSpec | None = None
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
            how = (
                "add one with olvf-export --quantize BUNDLE --calibration RADIOGRAPHS (or export with --int8)"
                if precision == "int8"
                else f"re-export with olvf-export --precision {precision or 'fp32'}"
            )
            raise BundleError(f"bundle has no {wanted} graph (it has: {have}); {how}")
        return sorted(candidates, key=lambda g: PRECISIONS.index(g.precision))[0]

    def graph_for(self, role: str, precision: str | None) -> GraphSpec:
        """The graph of ``precision`` when the bundle has one, else the default for ``role``."""
        exact = [g for g in self.graphs if g.role == role and g.precision == precision]
        return exact[0] if exact else self.graph(role)

    @property
    def fresh_operating_point(self) -> float:
        """The threshold on the ensemble's p(fresh) at or over which olvf recommends MRI."""
        return self.operating_points["fresh"]

    def to_dict(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        raw["display"] = self.display.to_dict()
        raw["intended_use"] = self.intended_use.to_dict()
        # JSON's own shapes (lists, not tuples), so that a signed copy compares equal to a re-read one
        return json.loads(json_text.dumps(raw))

    def to_json(self) -> str:
        """``manifest.json`` as olvf writes it, sealed with its integrity record."""
        return seal_manifest(self.to_dict())

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> Manifest:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(
                f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}); re-export the bundle"
            ) from None
        check_integrity(raw, source)
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
        for name in self.files:
            try:
                bundle_member(name, "listed file")
            except ValueError as exc:
                raise BundleError(f"manifest: {exc}; the bundle is not trustworthy, re-export it") from None
        for graph in self.graphs:
            for member in graph.members:
                if member not in self.files:
                    raise BundleError(f"manifest: graph file {member} has no sha256 entry")
        for engine in self.engines:
            if engine.file not in self.files:
                raise BundleError(f"manifest: engine {engine.file} has no sha256 entry")
        fresh = self.operating_points.get("fresh") if isinstance(self.operating_points, dict) else None
        if isinstance(fresh, bool) or not isinstance(fresh, int | float) or not 0.0 < fresh < 1.0:
            # 0 would send every patient to MRI and 1 none: neither is an operating point.
            raise BundleError(
                f"manifest: the fresh operating point must be a probability strictly between 0 and 1, got {fresh!r}; "
                "re-export the bundle or choose one with olvf-validate"
            )
        if not isinstance(self.demo, bool):
            raise BundleError(f"manifest: demo must be true or false, got {self.demo!r}")
        if self.domain is not None:
            if self.domain.file not in self.files:
                raise BundleError(f"manifest: domain statistics {self.domain.file} have no sha256 entry")
            if set(self.domain.models) != set(self.model_names):
                raise BundleError("manifest: the domain's models do not match the listed models; fit it again")
            unpooled = [spec.name for spec in self.models if not spec.features_output]
            if unpooled:
                raise BundleError(
                    f"manifest: the domain check needs the pooled features of {', '.join(unpooled)}, which this "
                    "bundle's graph does not output; re-export the bundle"
                )
        seeded = [spec.name for spec in self.models if "demo_seed" in spec.source]
        if seeded and not self.demo:
            # The banner is what keeps random weights out of a diagnosis; it cannot be switched off alone.
            raise BundleError(
                f"manifest: demo is false but {', '.join(seeded)} come from demo seeds (random weights); "
                "a demo bundle stays labelled DEMO, export real checkpoints instead"
            )


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
    except (TypeError, ValueError) as exc:
        raise BundleError(f"manifest: {where} is malformed ({exc}); re-export the bundle") from None


def _upgrade_schema_1(data: dict[str, Any], source: str) -> None:
    """Schema 1 -> 2, in place: crops were given on a 0..value_max scale, always 255, the display scale now."""
    for i, model in enumerate(data.get("models") or []):
        if not isinstance(model, dict) or not isinstance(model.get("preprocessing"), dict):
            continue
        preprocessing = dict(model["preprocessing"])
        value_max = preprocessing.pop("value_max", 255.0)
        if value_max != 255.0:
            raise BundleError(
                f"{source}: models[{i}] takes crops scaled to 0..{value_max}, which this olvf does not read; "
                "re-export the bundle with this olvf version"
            )
        model["preprocessing"] = preprocessing


def manifest_from_dict(raw: Any, source: str = MANIFEST_NAME) -> Manifest:
    if not isinstance(raw, dict) or raw.get("kind") != "olvf-bundle":
        raise BundleError(f"{source} is not an olvf bundle manifest")
    version = raw.get("schema_version")
    if version not in READABLE_SCHEMAS:
        raise BundleError(
            f"{source} has schema version {version}, this olvf reads {', '.join(map(str, READABLE_SCHEMAS))}; "
            "re-export the bundle with this olvf version or install the olvf that wrote it"
        )
    data = {key: value for key, value in raw.items() if key != INTEGRITY_KEY}
    if version == 1:
        data["models"] = [dict(m) if isinstance(m, dict) else m for m in data.get("models") or []]
        _upgrade_schema_1(data, source)
    data["schema_version"] = SCHEMA_VERSION
    absent = [key for key in ("models", "graphs", "ensemble") if key not in data]
    if absent:
        raise BundleError(f"{source} lacks {', '.join(absent)}; re-export the bundle with this olvf version")
    try:
        models = []
        for i, m in enumerate(data["models"]):
            m = dict(m)
            m["preprocessing"] = _build(Preprocessing, dict(m["preprocessing"]), f"models[{i}].preprocessing")
            g = dict(m["gradcam"])
            g["feature_shape"] = tuple(g["feature_shape"])
            m["gradcam"] = _build(GradCamSpec, g, f"models[{i}].gradcam")
            m["source"] = dict(m.get("source", {}))
            models.append(_build(ModelSpec, m, f"models[{i}]"))
        data["models"] = tuple(models)
        data["ensemble"] = _build(EnsembleSpec, data["ensemble"], "ensemble")
        if data.get("detector") is not None:
            d = dict(data["detector"])
            d["source"] = dict(d.get("source", {}))
            data["detector"] = _build(DetectorSpec, d, "detector")
        if "display" in data:
            try:
                data["display"] = DisplayConversion.from_dict(data["display"])
            except ValueError as exc:
                raise BundleError(f"{source}: display: {exc}; re-export the bundle with this olvf version") from None
        if "crops" in data:
            data["crops"] = _build(CropSettings, data["crops"], "crops")
        if "intended_use" in data:
            try:
                data["intended_use"] = IntendedUse.from_dict(data["intended_use"])
            except ValueError as exc:
                raise BundleError(f"{source}: {exc}; correct it with olvf-export --intended-use DIR FILE") from None
        data["graphs"] = tuple(_build(GraphSpec, g, f"graphs[{i}]") for i, g in enumerate(data["graphs"]))
        engines = []
        for i, e in enumerate(data.get("engines", [])):
            e = dict(e)
            e["profile"] = {k: list(v) for k, v in dict(e.get("profile", {})).items()}
            engines.append(_build(EngineSpec, e, f"engines[{i}]"))
        data["engines"] = tuple(engines)
        routes = []
        for i, r in enumerate(data.get("verified_routes", [])):
            r = dict(r)
            for key in ("cpu", "graphs", "figures"):
                if not isinstance(r.get(key, {}), dict):
                    raise BundleError(f"manifest: verified_routes[{i}].{key} must be an object; re-export the bundle")
            routes.append(_build(VerifiedRoute, r, f"verified_routes[{i}]"))
        data["verified_routes"] = tuple(routes)
        if data.get("domain") is not None:
            data["domain"] = _build(DomainSpec, data["domain"], "domain")
        for key in ("files", "producer", "parity", "operating_points"):
            if not isinstance(data.get(key, {}), dict):
                raise BundleError(f"manifest: {key} must be an object; re-export the bundle")
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{source} is incomplete or malformed ({exc}); re-export the bundle") from None
    manifest = _build(Manifest, data, "manifest")
    manifest.validate()
    return manifest


def read_manifest(bundle_dir: Path) -> Manifest:
    path = Path(bundle_dir) / MANIFEST_NAME
    return parse_manifest(read_manifest_bytes(Path(bundle_dir)), str(path))


def parse_manifest(data: bytes, source: str = MANIFEST_NAME) -> Manifest:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{source} is not UTF-8 text; copy the bundle again or re-export it") from None
    return Manifest.from_json(text, source)


def _bundles_inside(folder: Path, most: int = 3) -> list[Path]:
    """Bundles one folder down (a user who names engines/ for engines/demo), in name order, at most ``most``."""
    try:
        found = sorted(p for p in folder.iterdir() if (p / MANIFEST_NAME).is_file())
    except OSError:
        return []
    return found[:most]


def read_manifest_bytes(bundle_dir: Path) -> bytes:
    path = Path(bundle_dir) / MANIFEST_NAME
    if not path.is_file():
        inside = _bundles_inside(Path(bundle_dir))
        if inside:
            raise BundleError(
                f"{bundle_dir} is not a model bundle (no {MANIFEST_NAME}) but holds "
                f"{'one' if len(inside) == 1 else 'bundles'}: pass --bundle {' or '.join(map(str, inside))}"
            )
        raise BundleError(
            f"{bundle_dir} is not a model bundle (no {MANIFEST_NAME}); "
            "create one with olvf-export --out DIR, or olvf-export --demo --out DIR"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(
            f"cannot read {path} ({exc.strerror or exc}); copy the bundle again or re-export it"
        ) from None
