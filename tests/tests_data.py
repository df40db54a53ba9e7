"""Access to the synthetic crop images committed in tests/data (made by tests/data/make_crops.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).parent / "data"


def crop_paths() -> list[Path]:
    return sorted(DATA.glob("crop_*.png"))


def crop_images() -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in crop_paths()]
