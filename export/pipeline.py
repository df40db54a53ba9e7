"""Export as small steps, each ending in a check, published only when all pass."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from olvf import __version__
from olvf.export.architectures import Architecture
from olvf.export.fused import (
    CAM_FUSION,
    ENSEMBLE_OUTPUT,
    ENSEMBLE_RULE,
    INPUT_NAME,
    FusedEnsemble,
    class_maps_output,
    probabilities_output,
)
from olvf.export.onnx_graph import export_onnx
from olvf.export.parity import TOLERANCES, Tolerances, check_parity, measure_parity, parity_crops
from olvf.runtime.atomic import staged_directory
from olvf.runtime.bundle import sha256_file
from olvf.runtime.manifest import (
    CLASS_NAMES,
    MANIFEST_NAME,
    EnsembleSpec,
    GradCamSpec,
    GraphSpec,
    Manifest,
    ModelSpec,
    Preprocessing,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Member:
    """One classifier to export, with where it came from (written to the manifest)."""

    architecture: Architecture
    module: nn.Module
    source: dict[str, Any]


@dataclass(frozen=True)
class ExportOptions:
    precision: str = "fp32"
    max_batch: int = 32
    opset: int = 18
    preprocessing: Preprocessing = Preprocessing(input_size=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    fresh_threshold: float = 0.5
    parity_crops: int = 6
    tolerances: dict[str, Tolerances] | None = None

    @property
    def precisions(self) -> tuple[str, ...]:
        # The FP32 graph is always there: it is the CPU path and the FP16 graph's reference.
        return ("fp32",) if self.precision == "fp32" else ("fp32", "fp16")


def _versions() -> dict[str, str]:
    versions = {"olvf": __version__, "python": platform.python_version()}
    for package in ("torch", "torchvision", "onnx", "onnxscript", "onnxruntime"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _feature_shape(fused: FusedEnsemble, index: int, size: tuple[int, int]) -> tuple[int, int, int]:
    with torch.no_grad():
        features = fused.architectures[index].features(fused.models[index], torch.zeros(1, 3, *size))
    return (int(features.shape[1]), int(features.shape[2]), int(features.shape[3]))


def export_classifiers(
    out: Path,
    members: Sequence[Member],
    options: ExportOptions = ExportOptions(),
    *,
    demo: bool = False,
    force: bool = False,
    progress: Progress = lambda _line: None,
) -> Manifest:
    """Export ``members`` as one fused graph per precision into the bundle ``out``.

    Every graph passes the ONNX checker and the parity gate before the bundle
    is published; on any failure nothing is written and ``out`` is untouched.
    """
    tolerances = options.tolerances or TOLERANCES
    size = options.preprocessing.input_size
    crops = parity_crops(size, options.parity_crops)
    reference = FusedEnsemble([(m.architecture, m.module) for m in members], "fp32")
    started = time.monotonic()
    graphs: list[GraphSpec] = []
    files: dict[str, str] = {}
    parity: dict[str, Any] = {}
    steps = 2 * len(options.precisions)
    step = 0

    with staged_directory(out, force=force) as staging:
        for precision in options.precisions:
            fused = reference if precision == "fp32" else FusedEnsemble(
                [(m.architecture, m.module) for m in members], precision
            )
            name = f"ensemble_{precision}.onnx"
            step += 1
            progress(f"[{step}/{steps}] exporting {name} (about 30 s per graph on 2 cores)")
            opset = export_onnx(fused, staging / name, size, opset=options.opset, max_batch=options.max_batch)
            step += 1
            progress(f"[{step}/{steps}] checking {name} against PyTorch on {len(crops)} fixed crops")
            figures = measure_parity(reference, staging / name, crops)
            check_parity(figures, tolerances[precision], name)
            parity[name] = {**figures, "tolerances": vars(tolerances[precision])}
            progress(_summary(name, figures))
            graphs.append(
                GraphSpec(
                    role="ensemble",
                    file=name,
                    precision=precision,
                    opset=opset,
                    input_name=INPUT_NAME,
                    input_shape=("N", 3, *size),
                    output_names=tuple(fused.output_names),
                    max_batch=options.max_batch,
                )
            )
            files[name] = sha256_file(staging / name)

        models = tuple(
            ModelSpec(
                name=m.architecture.name,
                architecture=m.architecture.name,
                preprocessing=options.preprocessing,
                gradcam=GradCamSpec(
                    layer=m.architecture.cam_layer,
                    feature_shape=_feature_shape(reference, i, size),
                    definition=m.architecture.cam_definition,
                ),
                probabilities_output=probabilities_output(m.architecture.name),
                class_maps_output=class_maps_output(m.architecture.name),
                source=m.source,
            )
            for i, m in enumerate(members)
        )
        manifest = Manifest(
            classes=CLASS_NAMES,
            ensemble=EnsembleSpec(
                rule=ENSEMBLE_RULE,
                models=tuple(m.name for m in models),
                cam_fusion=CAM_FUSION,
                probabilities_output=ENSEMBLE_OUTPUT,
            ),
            models=models,
            graphs=tuple(graphs),
            files=files,
            precision=options.precision,
            producer=_versions(),
            parity=parity,
            operating_points={"fresh": options.fresh_threshold},
            demo=demo,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        manifest.validate()
        (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    progress(f"bundle written to {out} in {time.monotonic() - started:.0f} s")
    return manifest


def _summary(name: str, figures: dict[str, Any]) -> str:
    probs = max(figures["probabilities_max_abs_diff"].values())
    cams = max(figures["gradcam_max_abs_diff"].values())
    return (
        f"      {name}: probabilities max |diff| {probs:.1e}, top-1 agreement "
        f"{figures['top1_agreement']:.0%}, Grad-CAM max |diff| {cams:.1e}: pass"
    )
