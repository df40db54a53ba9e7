"""Seeded synthetic crops: BatchNorm calibration of demo weights and the export's parity inputs."""

from __future__ import annotations

import torch
from torch import nn

from olvf.runtime.bundle.config import IMAGENET_MEAN, IMAGENET_STD


def synthetic_crops(count: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """Seeded smooth random images, normalised like ImageNet inputs: (count, 3, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, max(2, size[0] // 16), max(2, size[1] // 16), generator=generator)
    smooth = nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    fine = 0.1 * torch.randn(count, 1, *size, generator=generator)
    gray = (smooth + fine).clamp(0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (gray.expand(-1, 3, -1, -1) - mean) / std
