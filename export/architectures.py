"""The classifier architectures olvf knows, and where each one's Grad-CAM is taken.

An architecture is a torchvision constructor plus two facts: which module is
the classification head, and how to run the backbone up to the activation
Grad-CAM looks at. ResNet-50 and ResNeXt-50 end ``layer4`` with a ReLU, so
their Grad-CAM layer is ``layer4`` (pytorch-grad-cam's ``layer4[-1]``).
torchvision's DenseNet ends ``features`` with ``norm5`` (a BatchNorm) and
applies the ReLU outside it; Grad-CAM is taken after that ReLU, where it
equals CAM, rather than at ``norm5``, where libraries disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _resnet_features(model: Any, x: torch.Tensor) -> torch.Tensor:
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def _densenet_features(model: Any, x: torch.Tensor) -> torch.Tensor:
    # Not in place: the caller may still hold norm5's output.
    return F.relu(model.features(x))


@dataclass(frozen=True)
class Architecture:
    """A classifier family the exporter accepts."""

    name: str
    flag: str
    build: Callable[[int], nn.Module]
    head: str
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    cam_layer: str
    cam_definition: str

    def head_of(self, model: nn.Module) -> nn.Linear:
        head = getattr(model, self.head)
        assert isinstance(head, nn.Linear), f"{self.name} head is not Linear"
        return head


_RESNET_CAM = (
    "Grad-CAM at the output of layer4 (after its final ReLU; pytorch-grad-cam's layer4[-1]): "
    "map_c = ReLU(sum_k W[c,k] A_k) / (h*w), W the fc weights, which equals autograd Grad-CAM "
    "on the class logit because the head is global average pooling then linear."
)
_DENSENET_CAM = (
    "Grad-CAM after the ReLU that follows features.norm5 (not at norm5 itself, where "
    "pytorch-grad-cam, TorchCAM and Captum disagree): map_c = ReLU(sum_k W[c,k] A_k) / (h*w), "
    "W the classifier weights; equals autograd Grad-CAM on the class logit at that activation."
)


def _torchvision(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)

    return build


_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    """Add an architecture; a second one with the same name or flag is refused."""
    if arch.name in _REGISTRY or any(a.flag == arch.flag for a in _REGISTRY.values()):
        raise ValueError(f"architecture {arch.name!r} / flag {arch.flag!r} is already registered")
    _REGISTRY[arch.name] = arch
    return arch


def get(name: str) -> Architecture:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(_REGISTRY)}") from None


def all_architectures() -> tuple[Architecture, ...]:
    return tuple(_REGISTRY.values())


RESNET50 = register(
    Architecture("resnet50", "resnet50", _torchvision("resnet50"), "fc", _resnet_features, "layer4", _RESNET_CAM)
)
DENSENET161 = register(
    Architecture(
        "densenet161",
        "densenet161",
        _torchvision("densenet161"),
        "classifier",
        _densenet_features,
        "features.norm5 -> ReLU",
        _DENSENET_CAM,
    )
)
RESNEXT50 = register(
    Architecture(
        "resnext50_32x4d",
        "resnext50",
        _torchvision("resnext50_32x4d"),
        "fc",
        _resnet_features,
        "layer4",
        _RESNET_CAM,
    )
)

#: The study's ensemble, in the order the CLI and reports list it.
STUDY_ENSEMBLE: tuple[Architecture, ...] = (RESNET50, DENSENET161, RESNEXT50)
