"""Turn grayscale crops into the ensemble's input, exactly as the manifest says."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from olvf.errors import InputError
from olvf.runtime.manifest import Preprocessing

_CV2_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


class Preprocessor:
    """Callable built from a :class:`Preprocessing` spec and nothing else."""

    def __init__(self, spec: Preprocessing) -> None:
        self.spec = spec
        self._interpolation = _CV2_INTERPOLATION[spec.interpolation]
        # Fold scaling and normalisation into one multiply-add per channel.
        std = np.asarray(spec.std, dtype=np.float32)
        self._scale = (1.0 / (spec.value_max * std)).reshape(1, 3, 1, 1)
        self._offset = (-np.asarray(spec.mean, dtype=np.float32) / std).reshape(1, 3, 1, 1)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, *self.spec.input_size)

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Crops: 2-D gray arrays of any size with values in [0, value_max]; returns (N, 3, H, W) float32."""
        height, width = self.spec.input_size
        batch = np.empty((len(crops), 1, height, width), dtype=np.float32)
        for i, crop in enumerate(crops):
            crop = np.asarray(crop)
            if crop.ndim != 2 or min(crop.shape) < 1:
                raise InputError(f"crop {i} must be a non-empty 2-D grayscale array, got shape {crop.shape}")
            if crop.dtype not in (np.uint8, np.uint16, np.float32):
                crop = crop.astype(np.float32)  # cv2.resize takes only these
            batch[i, 0] = cv2.resize(crop, (width, height), interpolation=self._interpolation)
        return batch * self._scale + self._offset
