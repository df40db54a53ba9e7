"""Square crops around detected vertebral bodies, for the classifier ensemble."""

from __future__ import annotations

import cv2
import numpy as np

from olvf.runtime.bundle.config import CropSettings


def crop_regions(boxes: np.ndarray, settings: CropSettings) -> np.ndarray:
    """Integer regions (M, 4) xyxy, possibly reaching outside the image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = (boxes[:, 2:] - boxes[:, :2]) * (1 + 2 * settings.margin)
    if settings.square:
        size = np.repeat(size.max(axis=1, keepdims=True), 2, axis=1)
    size = np.maximum(size, 1.0)
    low = np.floor(centre - size / 2)
    return np.concatenate([low, low + np.ceil(size)], axis=1).astype(np.int64)


def extract_crops(image: np.ndarray, boxes: np.ndarray, settings: CropSettings) -> list[np.ndarray]:
    """The pixels of each region; regions past the border are filled by repeating the edge."""
    height, width = image.shape[:2]
    crops = []
    for x1, y1, x2, y2 in crop_regions(boxes, settings):
        pad = (max(0, -y1), max(0, y2 - height), max(0, -x1), max(0, x2 - width))
        inside = image[max(0, y1) : min(height, y2), max(0, x1) : min(width, x2)]
        if any(pad):
            inside = cv2.copyMakeBorder(inside, *pad, borderType=cv2.BORDER_REPLICATE)
        crops.append(inside)
    return crops
