"""Grad-CAM by autograd, the way research code computes it: the yardstick for the graph's maps.

It runs the model's own torchvision ``forward`` and hooks the Grad-CAM layer,
so it shares no code path with the fused graph's closed form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from olvf.export.architectures import Architecture

# The module whose output is hooked, and whether the hook must apply the ReLU
# that torchvision's DenseNet.forward applies after ``features`` (norm5).
_HOOKS = {"layer4": ("layer4", False), "features.norm5 -> ReLU": ("features", True)}


def autograd_grad_cam(arch: Architecture, model: nn.Module, crops: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (N, H, W) in [0, 1] for ``target`` at the architecture's CAM layer.

    Channel weights are the spatial mean of d logit_target / d A, the map is
    ReLU(sum_k alpha_k A_k), upsampled bilinearly to the crop and min-max
    normalised per crop.
    """
    module_name, apply_relu = _HOOKS[arch.cam_layer]
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        activation = F.relu(output) if apply_relu else output
        captured.append(activation)
        return activation

    handle = model.get_submodule(module_name).register_forward_hook(hook)
    try:
        with torch.enable_grad():
            inputs = crops.float().detach().requires_grad_(True)
            logits = model.eval()(inputs)
            score = logits.gather(1, target.view(-1, 1)).sum()
            (gradients,) = torch.autograd.grad(score, captured[0])
    finally:
        handle.remove()
    activations = captured[0].detach()
    alpha = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((alpha * activations).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=crops.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    flat = cam.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    normalised = torch.where(span > 1e-12, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return normalised.view_as(cam)
