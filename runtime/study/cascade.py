"""The cascade's models, started: letterbox and detect, classify and explain, one model step at a time.

:class:`Cascade` holds the started runners of a bundle (the ensemble and, where the bundle has one, the detector)
and the steps that feed them and read their outputs. The study pipeline (:mod:`olvf.runtime.study.pipeline`)
strings these steps together over whole radiographs; :class:`olvf.runtime.study.runtime.Runtime` is a cascade
that can also run whole studies, and is what ``olvf.load`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np

from olvf.errors import BundleError, InputError
from olvf.runtime.bundle.domain import DomainModel, load_domain
from olvf.runtime.bundle.files import Bundle
from olvf.runtime.bundle.manifest import CLASSIFIER_FLAGS, GraphSpec, Manifest
from olvf.runtime.inputs.images import gray_image
from olvf.runtime.runners import Runner
from olvf.runtime.runners.selection import Selection
from olvf.runtime.steps.detection import Detections, Letterbox, letterbox, postprocess
from olvf.runtime.steps.gradcam import fuse_maps, grad_cam
from olvf.runtime.steps.preprocess import Preprocessor
from olvf.runtime.study.results import Classification

Target: TypeAlias = None | int | str | Sequence[int | str] | np.ndarray
_UNREAD = object()  # Runtime.domain before its statistics are read


class Cascade:
    """A bundle's started runners and the model steps around them; :meth:`close` stops them.

    Images are 2-D gray arrays on the display scale [0, 1]
    (:data:`olvf.runtime.bundle.config.DISPLAY_RANGE`), as :func:`read_radiograph` returns them.
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
        """The bundle's domain check (:mod:`olvf.runtime.bundle.domain`), read on first use; None when it has none."""
        if self._domain is _UNREAD:
            self._domain = load_domain(self.bundle)
        return self._domain  # type: ignore[return-value]

    @property
    def preprocessor(self) -> Preprocessor:
        """The manifest's crop preprocessing; a bundle without classifiers has none (:class:`BundleError`)."""
        self._require(self.runner, "classifiers", CLASSIFIER_FLAGS)
        assert self.preprocess is not None  # set whenever the classifiers are
        return self.preprocess

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
