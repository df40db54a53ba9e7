"""Make the synthetic vertebral-body crops in this folder (no patient data): python tests/data/make_crops.py"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SHAPES = {
    # name: (top-left, top-right, bottom-right, bottom-left) of the body, in a 256x256 crop
    "normal": [(60, 70), (196, 66), (200, 190), (56, 194)],
    "wedge": [(60, 120), (196, 70), (200, 190), (56, 194)],
    "biconcave": None,
}


def crop(name: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((256, 256), 70.0)
    mask = np.zeros((256, 256), np.uint8)
    if SHAPES[name] is None:
        top = [(x, 66 + 22 * np.sin(np.pi * (x - 56) / 144)) for x in range(56, 201, 8)]
        bottom = [(x, 194 - 22 * np.sin(np.pi * (x - 56) / 144)) for x in range(200, 55, -8)]
        points = np.array(top + bottom, np.int32)
    else:
        points = np.array(SHAPES[name], np.int32)
    cv2.fillPoly(mask, [points], 1)
    rim = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((7, 7), np.uint8))
    image += 60 * mask + 50 * rim
    image += cv2.GaussianBlur(rng.normal(0, 12, image.shape), (0, 0), 2)
    return np.clip(cv2.GaussianBlur(image, (0, 0), 1.5), 0, 255).astype(np.uint8)


if __name__ == "__main__":
    here = Path(__file__).parent
    for seed, name in enumerate(SHAPES):
        cv2.imwrite(str(here / f"crop_{name}.png"), crop(name, seed))
