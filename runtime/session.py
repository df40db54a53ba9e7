"""``olvf.load``: a bundle plus a backend, ready to detect vertebrae and classify crops.

:class:`Runtime` holds the started runners and does one model step at a
time (letterbox and detect, classify and explain); the study pipeline
(:mod:`olvf.runtime.pipeline`) strings the steps together for whole
radiographs, and :meth:`Runtime.infer` is a shortcut to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from olvf.errors import BundleError, InputError, OlvfError
from olvf.runtime.bundle import Bundle, open_bundle
from olvf.runtime.detection import Detections, Letterbox, letterbox, postprocess
from olvf.runtime.domain import DomainModel, load_domain
from olvf.runtime.gradcam import fuse_maps, grad_cam
from olvf.runtime.manifest import CLASSIFIER_FLAGS, GraphSpec, Manifest
from olvf.runtime.pipeline import ImageInput, StudyInput, StudyPipeline
from olvf.runtime.preprocess import Preprocessor
from olvf.runtime.radiograph import gray_image
from olvf.runtime.results import Classification, StudyResult
from olvf.runtime.runners import Runner, runner_class
from olvf.runtime.selection import GPU_DEVICES, Selection, auto_candidates, gpu_precision

Target = None | int | str | Sequence[int | str] | np.ndarray
_UNREAD = object()  # Runtime.domain before its statistics are read


class Runtime:
    """A loaded bundle. Use as a context manager, or call :meth:`close`.

    Images are 2-D gray arrays on the display scale [0, 1]
    (:data:`olvf.runtime.config.DISPLAY_RANGE`), as :func:`read_radiograph` returns them.
    """

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
        self._domain: DomainModel | None | object = _UNREAD
        manifest = bundle.manifest
        self.preprocess = Preprocessor(manifest.preprocessing) if runner is not None else None
        #: how the backend was chosen, for reports (see :class:`Selection`)
        self.selection = Selection(requested=backend, chosen=backend)
        self._max_batch = _max_batch(runner, manifest.graph_for("ensemble", precision)) if runner is not None else 0
        if detector is not None:
            self._detector_max_batch = _max_batch(detector, manifest.graph_for("detector", precision))

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def classes(self) -> tuple[str, ...]:
        return self.manifest.classes

    @property
    def domain(self) -> DomainModel | None:
        """The bundle's domain check (:mod:`olvf.runtime.domain`), read on first use; None when it has none."""
        if self._domain is _UNREAD:
            self._domain = load_domain(self.bundle)
        return self._domain  # type: ignore[return-value]

    # -- the ensemble ----------------------------------------------------
    def run_ensemble(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The fused graph's raw outputs for a preprocessed batch (N, 3, H, W) float32, N >= 1."""
        runner = self._require(self.runner, "classifiers", CLASSIFIER_FLAGS)
        return _run_split(runner, self._check_batch(batch), self._max_batch)

    def explain(self, outputs: dict[str, np.ndarray], target: Target = None) -> Classification:
        """Probabilities and Grad-CAM maps (at the crop input size) from the ensemble's raw outputs."""
        assert self.preprocess is not None  # outputs exist only where the classifiers ran
        probabilities = outputs[self.manifest.ensemble.probabilities_output]
        chosen = self._resolve_target(target, probabilities)
        size = self.manifest.preprocessing.input_size
        cams = {spec.name: grad_cam(outputs[spec.class_maps_output], chosen, size) for spec in self.manifest.models}
        return Classification(
            classes=self.classes,
            probabilities=probabilities,
            model_probabilities={spec.name: outputs[spec.probabilities_output] for spec in self.manifest.models},
            cams=cams,
            cam=fuse_maps(list(cams.values())),
            target=chosen,
            features={
                spec.name: outputs[spec.features_output] for spec in self.manifest.models if spec.features_output
            },
        )

    def empty_classification(self) -> Classification:
        """What the ensemble says about no crop at all (an image where no vertebra was found)."""
        names = self.manifest.model_names
        n_classes = len(self.classes)
        empty_maps = np.zeros((0, *self.manifest.preprocessing.input_size), dtype=np.float32)
        return Classification(
            classes=self.classes,
            probabilities=np.zeros((0, n_classes), np.float32),
            model_probabilities={m: np.zeros((0, n_classes), np.float32) for m in names},
            cams={m: empty_maps for m in names},
            cam=empty_maps,
            target=np.zeros(0, np.int64),
            features={
                spec.name: np.zeros((0, spec.gradcam.feature_shape[0]), np.float32)
                for spec in self.manifest.models
                if spec.features_output
            },
        )

    def classify(self, batch: np.ndarray, target: Target = None) -> Classification:
        """Classify a preprocessed batch (N, 3, H, W) float32; see :class:`Classification`."""
        self._require(self.runner, "classifiers", CLASSIFIER_FLAGS)
        batch = self._check_batch(batch)
        if len(batch) == 0:
            return self.empty_classification()
        return self.explain(self.run_ensemble(batch), target)

    def classify_crops(self, crops: Sequence[np.ndarray], target: Target = None) -> Classification:
        """Preprocess gray crops (display scale [0, 1], or uint8) as the manifest says, then classify them."""
        self._require(self.runner, "classifiers", CLASSIFIER_FLAGS)
        assert self.preprocess is not None
        return self.classify(self.preprocess(crops), target=target)

    # -- the detector ----------------------------------------------------
    def detector_input(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """One image letterboxed for the detector: (3, S, S) and how to map boxes back."""
        self._require(self.detector, "detector", "--detector best.pt|model.onnx")
        assert self.manifest.detector is not None
        return letterbox(gray_image(image), self.manifest.detector.input_size)

    def run_detector(self, tensors: np.ndarray) -> np.ndarray:
        """Raw detector output for letterboxed images (N, 3, S, S), split only at the graph's maximum batch."""
        detector = self._require(self.detector, "detector", "--detector best.pt|model.onnx")
        raw = _run_split(detector, tensors, self._detector_max_batch)
        return next(iter(raw.values()))

    def decode(self, raw: np.ndarray, fitted: Letterbox) -> Detections:
        """One image's raw output -> vertebrae in original pixels, as the manifest's detector settings say."""
        assert self.manifest.detector is not None
        return postprocess(raw, fitted, self.manifest.detector)

    def detect(self, image: np.ndarray) -> Detections:
        """Vertebral bodies in one gray image (H, W) on the display scale, top to bottom."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """All images letterboxed into one detector batch."""
        if not images:
            return []
        boxed = [self.detector_input(image) for image in images]
        raw = self.run_detector(np.stack([tensor for tensor, _ in boxed]))
        return [self.decode(raw[i], fitted) for i, (_, fitted) in enumerate(boxed)]

    # -- whole studies ---------------------------------------------------
    def infer(self, path: str | Path, *, outside_intended_use: bool = False) -> StudyResult:
        """Read one radiograph (DICOM, PNG, JPEG, TIFF) and run the whole cascade on it.

        A study the bundle was not made for comes back not assessed (``result.assessed`` False, no verdict);
        ``outside_intended_use=True`` (research only) gives the verdict anyway, marked as such.
        """
        return self.infer_many([path], outside_intended_use=outside_intended_use)[0]

    def infer_many(self, paths: Sequence[str | Path], *, outside_intended_use: bool = False) -> list[StudyResult]:
        """Several radiographs through the study pipeline (one detector and one ensemble call per batch).

        Raises the first input's error; use :class:`olvf.runtime.pipeline.StudyPipeline` to get every
        input's result or error.
        """
        return self._studies([Path(p) for p in paths], outside_intended_use)

    def analyse(self, images: Sequence[np.ndarray], *, outside_intended_use: bool = False) -> list[StudyResult]:
        """Gray images already in memory (display scale [0, 1]) through the study pipeline."""
        inputs = [ImageInput(f"image {i}", image) for i, image in enumerate(images)]
        return self._studies(inputs, outside_intended_use)

    def _studies(self, inputs: Sequence[StudyInput], outside_intended_use: bool = False) -> list[StudyResult]:
        from olvf.runtime.applicability import Gate

        results = []
        gate = Gate(self.manifest.intended_use, override=outside_intended_use)
        for outcome in StudyPipeline(self, gate=gate).run(inputs):
            if not isinstance(outcome, StudyResult):
                raise outcome.error
            results.append(outcome)
        return results

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
    backend: str = "auto",
    *,
    precision: str | None = None,
    verify: bool = True,
    trusted_keys: Sequence[str | Path] | None = None,
    **options: Any,
) -> Runtime:
    """Open ``bundle_dir`` (each graph's hash checked as it loads) and start ``backend`` on its graphs.

    ``trusted_keys``: public key files or folders, one of which must have signed the bundle
    (:mod:`olvf.runtime.signing`); None: those OLVF_TRUSTED_KEYS names, if any.

    ``backend="auto"`` (the default, as for ``olvf-infer``) tries TensorRT
    engines built on this machine, then ONNX Runtime on the GPU, then the
    fastest reduced-precision CPU route the bundle verified on this kind of CPU
    (OpenVINO INT8 or BF16), then ONNX Runtime on CPU; ``Runtime.selection`` says which runs and why the others
    did not. Under auto, ``device="cuda"`` or ``"tensorrt"`` names an ONNX
    Runtime provider, which is choosing ONNX Runtime with it. ``precision`` picks the FP32 or
    FP16 graph (default: FP32 on CPU, FP16 on a GPU where the bundle has it);
    other keyword options go to the backend (``device=``, ``threads=`` for
    onnxruntime; ``device=`` GPU index for tensorrt; ``checkpoints=`` for torch).
    """
    bundle = open_bundle(bundle_dir, verify=verify, trusted=trusted_keys)
    device = options.get("device")
    if backend == "auto" and device in GPU_DEVICES:
        rt = open_runtime(bundle, "onnxruntime", precision=precision, **options)
        rt.selection = Selection(
            requested="auto",
            chosen=f"ONNX Runtime with its {device} provider",
            rule=f"--device {device}: ONNX Runtime with its {'CUDA' if device == 'cuda' else 'TensorRT'} provider",
        )
        return rt
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
        rt.selection = Selection(
            requested="auto",
            chosen=candidate.label,
            passed_over=tuple(passed_over),
            verification=candidate.verification,
        )
        return rt
    raise AssertionError("the last auto candidate (ONNX Runtime on CPU) is never skipped")  # pragma: no cover


def open_runtime(bundle: Bundle, backend: str, *, precision: str | None = None, **options: Any) -> Runtime:
    """Start ``backend`` on an opened bundle's ensemble and detector."""
    manifest = bundle.manifest
    if backend == "onnxruntime" and options.get("device") in GPU_DEVICES:
        precision = gpu_precision(manifest, precision)
    cls = runner_class(backend)
    cls.check_precision(precision)
    # A precision the backend computes in without a graph of its own (OpenVINO BF16) runs another graph.
    computed = precision if precision in cls.computed_precisions else None
    graph_precision = cls.computed_precisions[computed] if computed else precision
    chosen = manifest.graph("ensemble" if manifest.has("ensemble") else "detector", graph_precision).precision
    started: list[Runner] = []
    try:
        ensemble = None
        if manifest.has("ensemble"):
            ensemble = cls.from_bundle(bundle, "ensemble", computed or chosen, **options).load()
            started.append(ensemble)
        detector, detector_backend = None, None
        if manifest.has("detector"):
            # The PyTorch reference covers the classifiers; the detector then runs on ONNX Runtime.
            detector_backend = backend if backend != "torch" else "onnxruntime"
            detector_options = options if backend != "torch" else {}
            detector_precision = computed or manifest.graph_for("detector", chosen).precision
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
