"""The parity gate: an exported graph must reproduce its checkpoints before it ships.

The same fixed crops go through the PyTorch models and through ONNX Runtime
on CPU. Compared: the probabilities (ensemble and per model), the top-1
class, each model's Grad-CAM map from the graph against Grad-CAM by
autograd on the PyTorch model for the same target class, and each model's
pooled features (what the domain check measures), relative to the largest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from olvf.errors import ParityError
from olvf.export.fused import (
    ENSEMBLE_OUTPUT,
    FusedEnsemble,
    class_maps_output,
    features_output,
    probabilities_output,
)
from olvf.export.gradcam_reference import autograd_grad_cam
from olvf.export.synthetic import synthetic_crops
from olvf.runtime.bundle.tolerances import TOP1_TIE_FACTOR, Tolerances
from olvf.runtime.runners.onnxruntime import OnnxRuntimeRunner
from olvf.runtime.steps.gradcam import grad_cam


def parity_crops(input_size: tuple[int, int], count: int = 6, seed: int = 1234) -> np.ndarray:
    """Fixed inputs: half smooth synthetic images, half white noise, all normalised."""
    smooth = synthetic_crops(count - count // 2, input_size, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    noise = torch.randn(count // 2, 3, *input_size, generator=generator)
    return torch.cat([smooth, noise]).numpy().astype(np.float32)


def measure_parity(reference: FusedEnsemble, graph_path: Path, crops: np.ndarray) -> dict[str, Any]:
    """Run ``crops`` through the FP32 PyTorch ensemble and the ONNX graph; return the figures."""
    with torch.no_grad():
        expected = dict(zip(reference.output_names, (t.numpy() for t in reference(torch.from_numpy(crops)))))
    with OnnxRuntimeRunner(graph_path) as runner:
        got = runner.run({runner.inputs[0].name: crops})

    ens = expected[ENSEMBLE_OUTPUT]
    target = ens.argmax(axis=1)
    prob_diffs = {"ensemble": float(np.abs(got[ENSEMBLE_OUTPUT] - ens).max())}
    cam_diffs: dict[str, float] = {}
    feature_diffs: dict[str, float] = {}
    size = (crops.shape[2], crops.shape[3])
    for arch, model in zip(reference.architectures, reference.models):
        name = arch.name
        prob_diffs[name] = float(np.abs(got[probabilities_output(name)] - expected[probabilities_output(name)]).max())
        reference_cam = autograd_grad_cam(arch, model, torch.from_numpy(crops), torch.from_numpy(target)).numpy()
        graph_cam = grad_cam(got[class_maps_output(name)], target, size)
        cam_diffs[name] = float(np.abs(graph_cam - reference_cam).max())
        want = expected[features_output(name)]
        feature_diffs[name] = float(np.abs(got[features_output(name)] - want).max() / max(np.abs(want).max(), 1e-12))

    # A flipped top-1 between two classes whose probabilities differ by less
    # than the tolerance is rounding, not disagreement; both are reported.
    top = np.sort(ens, axis=1)
    margin = top[:, -1] - top[:, -2]
    agree = got[ENSEMBLE_OUTPUT].argmax(axis=1) == target
    return {
        "crops": int(len(crops)),
        "probabilities_max_abs_diff": prob_diffs,
        "top1_agreement": float(agree.mean()),
        "top1_margins_of_disagreements": [float(m) for m in margin[~agree]],
        "gradcam_max_abs_diff": cam_diffs,
        "gradcam_reference": "autograd Grad-CAM on the PyTorch checkpoint, same target class",
        "features_max_rel_diff": feature_diffs,
    }


def check_parity(figures: dict[str, Any], tolerances: Tolerances, graph: str) -> None:
    """Raise :class:`ParityError` listing every figure over tolerance."""
    problems = []
    for name, diff in figures["probabilities_max_abs_diff"].items():
        if not diff <= tolerances.probabilities:
            problems.append(f"{name} probabilities differ by {diff:.2e} (> {tolerances.probabilities:.0e})")
    for margin in figures["top1_margins_of_disagreements"]:
        if margin > TOP1_TIE_FACTOR * tolerances.probabilities:
            problems.append(f"top-1 class changed on a crop with a {margin:.3f} probability margin")
    for name, diff in figures["gradcam_max_abs_diff"].items():
        if not diff <= tolerances.cam:
            problems.append(f"{name} Grad-CAM differs by {diff:.2e} (> {tolerances.cam:.0e})")
    for name, diff in figures.get("features_max_rel_diff", {}).items():
        if not diff <= tolerances.features:
            problems.append(
                f"{name} pooled features differ by {diff:.2e} of their largest (> {tolerances.features:.0e})"
            )
    if problems:
        raise ParityError(f"{graph} does not match PyTorch: " + "; ".join(problems) + "; no bundle was written")
