"""``olvf.load``: a bundle plus a backend, ready to detect vertebrae and classify crops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import Any

import numpy as np

from olvf.errors import BundleError, InputError, OlvfError
from olvf.runtime.bundle import Bundle, open_bundle
from olvf.runtime.crops import extract_crops
from olvf.runtime.detection import Detections, letterbox, postprocess
from olvf.runtime.gradcam import fuse_maps, grad_cam
from olvf.runtime.manifest import GraphSpec, Manifest
from olvf.runtime.preprocess import Preprocessor
from olvf.runtime.radiograph import RadiographInfo, read_radiograph
from olvf.runtime.runners import Runner, runner_class
from olvf.runtime.selection import GPU_DEVICES, auto_candidates, gpu_precision

Target = None | int | str | Sequence[int | str] | np.ndarray


@dataclass(frozen=True)
class Classification:
    """What the ensemble says about a batch of N crops.

    ``cams``/``cam`` are Grad-CAM maps at the crop's input resolution, float32
    in [0, 1], each min-max normalised per crop, for ``target`` (the
    ensemble's predicted class unless another was asked for).
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray
    model_probabilities: dict[str, np.ndarray]
    cams: dict[str, np.ndarray]
    cam: np.ndarray
    target: np.ndarray = field(repr=False)

    @property
    def predictions(self) -> np.ndarray:
        """Index of the most probable class per crop."""
        return self.probabilities.argmax(axis=1)

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] for i in self.predictions]

    def __len__(self) -> int:
        return len(self.probabilities)

    def __getitem__(self, index: slice) -> Classification:
        """The results of a contiguous run of crops (one study's vertebrae)."""
        return Classification(
            classes=self.classes,
            probabilities=self.probabilities[index],
            model_probabilities={k: v[index] for k, v in self.model_probabilities.items()},
            cams={k: v[index] for k, v in self.cams.items()},
            cam=self.cam[index],
            target=self.target[index],
        )


@dataclass(frozen=True)
class StudyAnalysis:
    """One image through the cascade: its vertebrae and what the ensemble says about each."""

    detections: Detections
    classification: Classification


@dataclass(frozen=True)
class StudyResult:
    """One radiograph file through the cascade."""

    radiograph: RadiographInfo
    detections: Detections
    classification: Classification


@dataclass(frozen=True)
class Selection:
    """Which backend was asked for, which runs, and why the ones before it did not (label, reason)."""

    requested: str
    chosen: str
    passed_over: tuple[tuple[str, str], ...] = ()

    @property
    def why(self) -> str:
        if not self.passed_over:
            return f"--backend {self.requested}" if self.requested != "auto" else "--backend auto: first choice"
        return "--backend auto: " + "; ".join(f"{label}: {reason}" for label, reason in self.passed_over)

    @property
    def brief(self) -> str:
        """``why`` with each reason cut to its first clause, for a summary line (reports keep it whole)."""
        if not self.passed_over:
            return self.why
        return "auto: " + ", ".join(f"{label}: {_first_clause(reason)}" for label, reason in self.passed_over)


def _first_clause(text: str) -> str:
    cuts = [i for i in (text.find(": "), text.find("; "), text.find(" (")) if i > 0]
    return text[: min(cuts)] if cuts else text


class Runtime:
    """A loaded bundle. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        bundle: Bundle,
        runner: Runner | None,
        backend: str,
        precision: str,
        detector: Runner | None = None,
        detector_backend: str | None = None,
    ) -> None:
        self.bundle = bundle
        self.runner = runner
        self.backend = backend
        self.precision = precision
        self.detector = detector
        self.detector_backend = detector_backend
        #: milliseconds of each stage of the last call that ran it (read, detect, crops, ensemble, gradcam)
        self.stage_ms: dict[str, float] = {}
        manifest = bundle.manifest
        self.preprocess = Preprocessor(manifest.preprocessing) if runner is not None else None
        #: how the backend was chosen, for reports (see :class:`Selection`)
        self.selection = Selection(requested=backend, chosen=backend)
        self._max_batch = _max_batch(runner, manifest.graph_for("ensemble", precision)) if runner is not None else 0
        if detector is not None:
            assert manifest.detector is not None  # validated with the manifest
            self._detector_settings = manifest.detector.settings
            self._detector_max_batch = _max_batch(detector, manifest.graph_for("detector", precision))

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def classes(self) -> tuple[str, ...]:
        return self.manifest.classes

    def classify(self, batch: np.ndarray, target: Target = None) -> Classification:
        """Classify a preprocessed batch (N, 3, H, W) float32; see :class:`Classification`."""
        self._require(self.runner, "classifiers", "--resnet50 R.pt --densenet161 D.pt --resnext50 X.pt")
        batch = self._check_batch(batch)
        names = self.manifest.model_names
        n_classes = len(self.classes)
        if len(batch) == 0:
            self.stage_ms.update(ensemble=0.0, gradcam=0.0)
            empty_maps = np.zeros((0, *batch.shape[2:]), dtype=np.float32)
            return Classification(
                classes=self.classes,
                probabilities=np.zeros((0, n_classes), np.float32),
                model_probabilities={m: np.zeros((0, n_classes), np.float32) for m in names},
                cams={m: empty_maps for m in names},
                cam=empty_maps,
                target=np.zeros(0, np.int64),
            )
        started = perf_counter()
        outputs = _run_split(self.runner, batch, self._max_batch)
        ran = perf_counter()
        probabilities = outputs[self.manifest.ensemble.probabilities_output]
        chosen = self._resolve_target(target, probabilities)
        size = (batch.shape[2], batch.shape[3])
        cams = {spec.name: grad_cam(outputs[spec.class_maps_output], chosen, size) for spec in self.manifest.models}
        fused = fuse_maps(list(cams.values()))
        self.stage_ms.update(ensemble=(ran - started) * 1e3, gradcam=(perf_counter() - ran) * 1e3)
        return Classification(
            classes=self.classes,
            probabilities=probabilities,
            model_probabilities={spec.name: outputs[spec.probabilities_output] for spec in self.manifest.models},
            cams=cams,
            cam=fused,
            target=chosen,
        )

    def classify_crops(self, crops: Sequence[np.ndarray], target: Target = None) -> Classification:
        """Preprocess raw grayscale crops as the manifest says, then classify them."""
        self._require(self.runner, "classifiers", "--resnet50 R.pt --densenet161 D.pt --resnext50 X.pt")
        assert self.preprocess is not None
        return self.classify(self.preprocess(crops), target=target)

    def detect(self, image: np.ndarray) -> Detections:
        """Vertebral bodies in one gray image (H, W) with values 0..255, top to bottom."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """All images letterboxed into one detector batch (split only at the graph's maximum)."""
        detector = self._require(self.detector, "detector", "--detector best.pt|model.onnx")
        if not images:
            return []
        size = self.manifest.detector.input_size  # type: ignore[union-attr]
        started = perf_counter()
        boxed = [letterbox(_gray(image), size) for image in images]
        raw = _run_split(detector, np.stack([b[0] for b in boxed]), self._detector_max_batch)
        output = next(iter(raw.values()))
        found = [postprocess(output[i], boxed[i][1], self._detector_settings) for i in range(len(images))]
        self.stage_ms["detect"] = (perf_counter() - started) * 1e3
        return found

    def analyse(self, images: Sequence[np.ndarray]) -> list[StudyAnalysis]:
        """Detect, crop and classify: every vertebra of every image in one ensemble batch."""
        self._require(self.runner, "classifiers", "--resnet50 R.pt --densenet161 D.pt --resnext50 X.pt")
        found = self.detect_batch(images)
        started = perf_counter()
        crops = [
            crop
            for image, dets in zip(images, found)
            for crop in extract_crops(_gray(image), dets.boxes, self.manifest.crops)
        ]
        assert self.preprocess is not None
        batch = self.preprocess(crops) if crops else np.zeros((0, *self.preprocess.input_shape), np.float32)
        self.stage_ms["crops"] = (perf_counter() - started) * 1e3
        everything = self.classify(batch)
        studies, start = [], 0
        for dets in found:
            end = start + len(dets)
            studies.append(StudyAnalysis(dets, everything[start:end]))
            start = end
        return studies

    def infer(self, path: str | Path) -> StudyResult:
        """Read one radiograph (DICOM, PNG, JPEG, TIFF) and run the whole cascade on it."""
        return self.infer_many([path])[0]

    def infer_many(self, paths: Sequence[str | Path]) -> list[StudyResult]:
        """Several radiographs: one detector batch and one ensemble batch for all of them."""
        started = perf_counter()
        radiographs = [read_radiograph(path, self.manifest.display) for path in paths]
        self.stage_ms["read"] = (perf_counter() - started) * 1e3
        # The detector and the crops work on the 0..255 scale the models were trained on.
        studies = self.analyse([r.pixels * np.float32(255.0) for r in radiographs])
        return [StudyResult(r.info, study.detections, study.classification) for r, study in zip(radiographs, studies)]

    def _require(self, runner: Runner | None, what: str, flags: str) -> Runner:
        if runner is None:
            raise BundleError(f"bundle {self.bundle.path} has no {what}; export them into it with olvf-export {flags}")
        return runner

    # -- helpers ---------------------------------------------------------
    def _check_batch(self, batch: Any) -> np.ndarray:
        batch = np.asarray(batch)
        assert self.preprocess is not None  # only called once the classifiers are known to be there
        expected = self.preprocess.input_shape
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise InputError(
                f"batch must have shape (N, {', '.join(map(str, expected))}) as the bundle's manifest says, "
                f"got {batch.shape}"
            )
        if not np.issubdtype(batch.dtype, np.floating):
            raise InputError(
                f"batch must be float32, preprocessed as the manifest says, got {batch.dtype}; "
                "use Runtime.classify_crops for raw crops"
            )
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if not np.isfinite(batch).all():
            raise InputError("batch contains NaN or infinite values")
        return batch

    def _resolve_target(self, target: Target, probabilities: np.ndarray) -> np.ndarray:
        n = len(probabilities)
        if target is None:
            return probabilities.argmax(axis=1)
        items = [target] * n if isinstance(target, (int, str, np.integer)) else list(target)
        if len(items) != n:
            raise InputError(f"target has {len(items)} entries for {n} crops")
        resolved = []
        for item in items:
            if isinstance(item, str):
                if item not in self.classes:
                    raise InputError(f"unknown target class {item!r}; choose one of {', '.join(self.classes)}")
                resolved.append(self.classes.index(item))
            elif 0 <= int(item) < len(self.classes):
                resolved.append(int(item))
            else:
                raise InputError(f"target class index {item} out of range 0..{len(self.classes) - 1}")
        return np.asarray(resolved, dtype=np.int64)

    # -- lifetime --------------------------------------------------------
    def close(self) -> None:
        for runner in (self.runner, self.detector):
            if runner is not None:
                runner.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 1:
        raise InputError(f"images must be 2-D grayscale arrays (H, W) with values 0..255, got shape {image.shape}")
    return image if image.dtype in (np.uint8, np.float32) else image.astype(np.float32)


def _run_split(runner: Runner, batch: np.ndarray, max_batch: int) -> dict[str, np.ndarray]:
    """One call when the batch fits, else chunks of the graph's maximum batch."""
    spec = runner.inputs[0]
    parts = [
        runner.run({spec.name: batch[i : i + max_batch].astype(spec.dtype, copy=False)})
        for i in range(0, len(batch), max_batch)
    ]
    if len(parts) == 1:
        return parts[0]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _max_batch(runner: Runner, graph: GraphSpec) -> int:
    return min(graph.max_batch, runner.max_batch or graph.max_batch)


def load(
    bundle_dir: str | Path,
    backend: str = "onnxruntime",
    *,
    precision: str | None = None,
    verify: bool = True,
    **options: Any,
) -> Runtime:
    """Open ``bundle_dir`` (hashes checked) and start ``backend`` on its graphs.

    ``backend="auto"`` tries TensorRT engines built on this machine, then ONNX
    Runtime on the GPU, then ONNX Runtime on CPU; ``Runtime.selection`` says
    which runs and why the others did not. ``precision`` picks the FP32 or
    FP16 graph (default: FP32 on CPU, FP16 on a GPU where the bundle has it);
    other keyword options go to the backend (``device=``, ``threads=`` for
    onnxruntime; ``device=`` GPU index for tensorrt; ``checkpoints=`` for torch).
    """
    bundle = open_bundle(bundle_dir, verify=verify)
    if backend == "auto" and options.get("device") in GPU_DEVICES:
        backend = "onnxruntime"  # naming an ONNX Runtime provider is choosing ONNX Runtime
    if backend != "auto":
        return open_runtime(bundle, backend, precision=precision, **options)

    passed_over: list[tuple[str, str]] = []
    candidates = auto_candidates(bundle.manifest, precision, **options)
    for candidate in candidates:
        if candidate.skip is not None:
            passed_over.append((candidate.label, candidate.skip))
            continue
        try:
            rt = open_runtime(bundle, candidate.backend, precision=candidate.precision, **candidate.options)
        except OlvfError as exc:
            if candidate is candidates[-1]:
                raise
            passed_over.append((candidate.label, str(exc)))
            continue
        rt.selection = Selection(requested="auto", chosen=candidate.label, passed_over=tuple(passed_over))
        return rt
    raise AssertionError("the last auto candidate (ONNX Runtime on CPU) is never skipped")


def open_runtime(bundle: Bundle, backend: str, *, precision: str | None = None, **options: Any) -> Runtime:
    """Start ``backend`` on an opened bundle's ensemble and detector."""
    manifest = bundle.manifest
    if backend == "onnxruntime" and options.get("device") in GPU_DEVICES:
        precision = gpu_precision(manifest, precision)
    chosen = manifest.graph("ensemble" if manifest.has("ensemble") else "detector", precision).precision
    started: list[Runner] = []
    try:
        ensemble = None
        if manifest.has("ensemble"):
            ensemble = runner_class(backend).from_bundle(bundle, "ensemble", chosen, **options).load()
            started.append(ensemble)
        detector, detector_backend = None, None
        if manifest.has("detector"):
            # The PyTorch reference covers the classifiers; the detector then runs on ONNX Runtime.
            detector_backend = backend if backend != "torch" else "onnxruntime"
            detector_options = options if backend != "torch" else {}
            detector_precision = manifest.graph_for("detector", chosen).precision
            detector = (
                runner_class(detector_backend)
                .from_bundle(bundle, "detector", detector_precision, **detector_options)
                .load()
            )
            started.append(detector)
    except BaseException:
        for runner in started:
            runner.close()
        raise
    # A TensorRT engine's precision is its own, not that of the graph it was built from.
    first = ensemble if ensemble is not None else detector
    return Runtime(bundle, ensemble, backend, (first and first.precision) or chosen, detector, detector_backend)
