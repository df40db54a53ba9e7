"""Demo weights: the real architectures with seeded random weights, labelled as a demo everywhere.

Nothing trained can be shipped or downloaded, yet a new installation, CI and
the end-to-end tests need a bundle. Random initialisation alone leaves
BatchNorm statistics at their defaults, so activations grow without bound
through fifty layers and every probability saturates at 0 or 1. The
statistics are therefore calibrated on seeded synthetic crops, which keeps
activations in the range trained networks have; the decisions still mean
nothing, and every report of a demo bundle says so.

Residual branches also start scaled down (``RESIDUAL_GAIN``), as torchvision's
``zero_init_residual`` does but not to zero. A random fifty-layer ResNet at
full gain is chaotic: it amplifies FP16 rounding until class maps differ by
about 20 % between FP16 and FP32, which trained networks do not do. At gain
0.2 the demo is as well-conditioned as a trained network and can pass the
same FP16 parity gate.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from olvf.export.architectures import STUDY_ENSEMBLE, Architecture

RESIDUAL_GAIN = 0.2


def synthetic_crops(count: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """Seeded smooth random images, normalised like ImageNet inputs: (count, 3, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, max(2, size[0] // 16), max(2, size[1] // 16), generator=generator)
    smooth = nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    fine = 0.1 * torch.randn(count, 1, *size, generator=generator)
    gray = (smooth + fine).clamp(0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (gray.expand(-1, 3, -1, -1) - mean) / std


def calibrate_batchnorm(model: nn.Module, crops: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to those of ``crops``; returns the model in eval mode."""
    saved = {}
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            saved[module] = module.momentum
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(crops)
    for module, momentum in saved.items():
        module.momentum = momentum
    return model.eval()


def demo_model(arch: Architecture, seed: int, input_size: tuple[int, int] = (224, 224)) -> nn.Module:
    """One demo classifier: reproducible from ``seed`` alone."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    model = arch.build(3)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(".bn3"):  # the last BatchNorm of every ResNet/ResNeXt bottleneck
                module.weight.mul_(RESIDUAL_GAIN)
    return calibrate_batchnorm(model, synthetic_crops(8, input_size, seed))


def demo_members(
    seed: int = 0, input_size: tuple[int, int] = (224, 224), architectures: tuple[Architecture, ...] = STUDY_ENSEMBLE
) -> list[tuple[Architecture, nn.Module, int]]:
    """The study's three architectures with demo weights, each with the seed that made it."""
    return [(arch, demo_model(arch, seed + i, input_size), seed + i) for i, arch in enumerate(architectures)]
