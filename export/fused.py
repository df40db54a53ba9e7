"""The fused ensemble: one module, one graph, every output the runtime needs.

Input ``crops`` (N, 3, H, W) float32. Outputs, all float32:

- ``probabilities`` (N, C): the ensemble, the mean of the models' softmax;
- ``<model>_probabilities`` (N, C) per model;
- ``<model>_class_maps`` (N, C, h, w) per model: ``sum_k W[c,k] A_k`` at the
  Grad-CAM layer, from which the runtime takes Grad-CAM for any class
  without a backward pass (see ``olvf.runtime.steps.gradcam``);
- ``<model>_features`` (N, K) per model: the globally average-pooled
  features the head reads, from which the runtime tells whether a crop looks
  like what the bundle was checked on (see ``olvf.runtime.bundle.domain``).

For FP16 the backbones run in half precision while the head, the global
pooling (a reduction), the softmax, the class maps and the pooled features
stay in FP32: the casts are part of the graph, which is what a strongly
typed TensorRT 11 network needs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from olvf.export.architectures import Architecture

ENSEMBLE_RULE = "mean_probabilities"
CAM_FUSION = "mean_of_normalised_model_maps"
INPUT_NAME = "crops"
ENSEMBLE_OUTPUT = "probabilities"


def probabilities_output(model_name: str) -> str:
    return f"{model_name}_probabilities"


def class_maps_output(model_name: str) -> str:
    return f"{model_name}_class_maps"


def features_output(model_name: str) -> str:
    return f"{model_name}_features"


class FusedEnsemble(nn.Module):
    """Run every classifier on the same crops; see the module docstring for outputs."""

    def __init__(self, members: Sequence[tuple[Architecture, nn.Module]], precision: str = "fp32") -> None:
        super().__init__()
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
        self.architectures = [arch for arch, _ in members]
        self.precision = precision
        models = []
        for arch, model in members:
            model = copy.deepcopy(model).eval()
            if precision == "fp16":
                model.half()
                arch.head_of(model).float()
            models.append(model)
        self.models = nn.ModuleList(models)

    @property
    def output_names(self) -> list[str]:
        names = [ENSEMBLE_OUTPUT]
        for arch in self.architectures:
            names += [probabilities_output(arch.name), class_maps_output(arch.name), features_output(arch.name)]
        return names

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = crops.half() if self.precision == "fp16" else crops
        per_model: list[torch.Tensor] = []
        probabilities = []
        for arch, model in zip(self.architectures, self.models):
            features = arch.features(model, x).float()
            head = arch.head_of(model)
            pooled = features.mean(dim=(2, 3))
            logits = head(pooled)
            probs = torch.softmax(logits, dim=1)
            # A 1x1 convolution with the head's weights: cheap, and every backend has it.
            class_maps = F.conv2d(features, head.weight[:, :, None, None])
            probabilities.append(probs)
            per_model += [probs, class_maps, pooled]
        ensemble = torch.stack(probabilities).mean(dim=0)
        return (ensemble, *per_model)
