"""Turn grayscale crops into the ensemble's input, exactly as the manifest says."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from olvf.errors import InputError
from olvf.runtime.bundle.config import Preprocessing

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
        # (value - mean) / std as one multiply-add per channel.
        std = np.asarray(spec.std, dtype=np.float32)
        self._scale = (1.0 / std).reshape(1, 3, 1, 1)
        self._offset = (-np.asarray(spec.mean, dtype=np.float32) / std).reshape(1, 3, 1, 1)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, *self.spec.input_size)

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Crops: 2-D gray arrays of any size on the display scale [0, 1] (float), or 8-bit (uint8, divided by
        255 as torchvision's ``ToTensor`` does); returns (N, 3, H, W) float32."""
        height, width = self.spec.input_size
        batch = np.empty((len(crops), 1, height, width), dtype=np.float32)
        for i, crop in enumerate(crops):
            crop = np.asarray(crop)
            if crop.ndim != 2 or min(crop.shape) < 1:
                raise InputError(f"crop {i} must be a non-empty 2-D grayscale array, got shape {crop.shape}")
            if crop.dtype == np.uint8:
                crop = crop.astype(np.float32) * np.float32(1 / 255)
            elif np.issubdtype(crop.dtype, np.floating):
                crop = crop.astype(np.float32, copy=False)  # cv2.resize takes float32, not float64
            else:
                raise InputError(
                    f"crop {i} is {crop.dtype}: give uint8 (0..255) or float gray values in [0, 1] (the display scale)"
                )
            batch[i, 0] = cv2.resize(crop, (width, height), interpolation=self._interpolation)
        return batch * self._scale + self._offset
