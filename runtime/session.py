"""``olvf.load``: a bundle plus a backend, ready to classify crops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from olvf.errors import InputError
from olvf.runtime.bundle import Bundle, open_bundle
from olvf.runtime.gradcam import fuse_maps, grad_cam
from olvf.runtime.manifest import Manifest
from olvf.runtime.preprocess import Preprocessor
from olvf.runtime.runners import Runner, runner_class

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


class Runtime:
    """A loaded bundle. Use as a context manager, or call :meth:`close`."""

    def __init__(self, bundle: Bundle, runner: Runner, backend: str, precision: str) -> None:
        self.bundle = bundle
        self.runner = runner
        self.backend = backend
        self.precision = precision
        self.preprocess = Preprocessor(bundle.manifest.preprocessing)
        self._max_batch = bundle.manifest.graph("ensemble", precision).max_batch

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def classes(self) -> tuple[str, ...]:
        return self.manifest.classes

    def classify(self, batch: np.ndarray, target: Target = None) -> Classification:
        """Classify a preprocessed batch (N, 3, H, W) float32; see :class:`Classification`."""
        batch = self._check_batch(batch)
        names = self.manifest.model_names
        n_classes = len(self.classes)
        if len(batch) == 0:
            empty_maps = np.zeros((0, *batch.shape[2:]), dtype=np.float32)
            return Classification(
                classes=self.classes,
                probabilities=np.zeros((0, n_classes), np.float32),
                model_probabilities={m: np.zeros((0, n_classes), np.float32) for m in names},
                cams={m: empty_maps for m in names},
                cam=empty_maps,
                target=np.zeros(0, np.int64),
            )
        outputs = self._run_split(batch)
        probabilities = outputs[self.manifest.ensemble.probabilities_output]
        chosen = self._resolve_target(target, probabilities)
        size = (batch.shape[2], batch.shape[3])
        cams = {
            spec.name: grad_cam(outputs[spec.class_maps_output], chosen, size) for spec in self.manifest.models
        }
        return Classification(
            classes=self.classes,
            probabilities=probabilities,
            model_probabilities={spec.name: outputs[spec.probabilities_output] for spec in self.manifest.models},
            cams=cams,
            cam=fuse_maps(list(cams.values())),
            target=chosen,
        )

    def classify_crops(self, crops: Sequence[np.ndarray], target: Target = None) -> Classification:
        """Preprocess raw grayscale crops as the manifest says, then classify them."""
        return self.classify(self.preprocess(crops), target=target)

    # -- helpers ---------------------------------------------------------
    def _check_batch(self, batch: Any) -> np.ndarray:
        batch = np.asarray(batch)
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

    def _run_split(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """One call when the batch fits, else chunks of the graph's maximum batch."""
        name = self.runner.inputs[0].name
        feeds_dtype = self.runner.inputs[0].dtype
        parts = [
            self.runner.run({name: batch[i : i + self._max_batch].astype(feeds_dtype, copy=False)})
            for i in range(0, len(batch), self._max_batch)
        ]
        if len(parts) == 1:
            return parts[0]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

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
        self.runner.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def load(
    bundle_dir: str | Path,
    backend: str = "onnxruntime",
    *,
    precision: str | None = None,
    verify: bool = True,
    **options: Any,
) -> Runtime:
    """Open ``bundle_dir`` (hashes checked) and start ``backend`` on its ensemble graph.

    ``precision`` picks the FP32 or FP16 graph (default: FP32 where present);
    other keyword options go to the backend (``device=``, ``threads=`` for
    onnxruntime; ``checkpoints=`` for torch).
    """
    bundle = open_bundle(bundle_dir, verify=verify)
    graph = bundle.manifest.graph("ensemble", precision)
    runner = runner_class(backend).from_bundle(bundle, "ensemble", graph.precision, **options)
    runner.load()
    return Runtime(bundle, runner, backend, graph.precision)
