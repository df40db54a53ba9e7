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
from olvf.atomic import staged_directory
from olvf.digest import sha256_file
from olvf.errors import CheckpointError, OlvfError
from olvf.export.architectures import Architecture
from olvf.export.fused import (
    CAM_FUSION,
    ENSEMBLE_OUTPUT,
    ENSEMBLE_RULE,
    INPUT_NAME,
    FusedEnsemble,
    class_maps_output,
    features_output,
    probabilities_output,
)
from olvf.export.onnx_graph import export_onnx
from olvf.export.parity import check_parity, measure_parity, parity_crops
from olvf.runtime.bundle import tolerances as limits
from olvf.runtime.bundle.config import (
    DEFAULT_CONF,
    DEFAULT_CROP_MARGIN,
    DEFAULT_IOU,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropSettings,
    DetectorSpec,
    Preprocessing,
)
from olvf.runtime.bundle.manifest import (
    CLASS_NAMES,
    MANIFEST_NAME,
    EnsembleSpec,
    GradCamSpec,
    GraphSpec,
    Manifest,
    ModelSpec,
)
from olvf.runtime.bundle.tolerances import Tolerances

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DetectorSource", "ExportOptions", "Member", "export_bundle"]

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
    preprocessing: Preprocessing = Preprocessing()
    fresh_threshold: float = 0.5
    parity_crops: int = 6
    crop_margin: float = DEFAULT_CROP_MARGIN
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


@dataclass(frozen=True)
class DetectorSource:
    """A detector to put in the bundle (a ``.pt`` of either YOLOv5 lineage, or ONNX), plus what it may not record."""

    path: Path
    imgsz: int | None = None
    stride: int | None = None
    names: tuple[str, ...] | None = None
    conf: float = DEFAULT_CONF
    iou: float = DEFAULT_IOU
    trust_pickle: bool = False
    radiograph: Any = None  # a gray image for the parity check, on the display scale [0, 1]
    origin: dict[str, Any] | None = None  # the manifest's record of the source; default: the file's name and hash


@dataclass
class _Staged:
    """What the steps have written so far."""

    graphs: list[GraphSpec]
    files: dict[str, str]
    parity: dict[str, Any]


def export_bundle(
    out: Path,
    members: Sequence[Member] = (),
    options: ExportOptions = ExportOptions(),
    *,
    detector: DetectorSource | None = None,
    demo: bool = False,
    force: bool = False,
    progress: Progress = lambda _line: None,
    finish: Callable[[Path], Manifest] | None = None,
) -> Manifest:
    """Export the classifiers (one fused graph per precision) and/or the detector into the bundle ``out``.

    Every graph passes the ONNX checker and its parity gate before the bundle
    is published; on any failure nothing is written and ``out`` is untouched.
    ``finish`` runs on the complete staged bundle before it is published (the
    TensorRT engines are built and verified there) and returns its manifest.
    """
    if not members and detector is None:
        raise OlvfError("nothing to export: give the three classifier checkpoints, a detector, or both")
    started = time.monotonic()
    staged = _Staged([], {}, {})
    with staged_directory(out, force=force) as staging:
        detector_spec = _export_detector(staging, detector, options, staged, progress) if detector else None
        models = _export_bundle(staging, members, options, staged, progress) if members else ()
        manifest = Manifest(
            classes=CLASS_NAMES,
            ensemble=EnsembleSpec(
                rule=ENSEMBLE_RULE,
                models=tuple(m.name for m in models),
                cam_fusion=CAM_FUSION,
                probabilities_output=ENSEMBLE_OUTPUT,
            ),
            models=models,
            graphs=tuple(staged.graphs),
            files=staged.files,
            precision=options.precision,
            producer=_versions(),
            parity=staged.parity,
            operating_points={"fresh": options.fresh_threshold},
            demo=demo,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            detector=detector_spec,
            crops=CropSettings(margin=options.crop_margin),
        )
        manifest.validate()
        (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        if finish is not None:
            manifest = finish(staging)
    progress(f"bundle written to {out} in {time.monotonic() - started:.0f} s")
    return manifest


def _export_bundle(
    staging: Path, members: Sequence[Member], options: ExportOptions, staged: _Staged, progress: Progress
) -> tuple[ModelSpec, ...]:
    tolerances = options.tolerances or limits.CLASSIFIERS
    size = options.preprocessing.input_size
    crops = parity_crops(size, options.parity_crops)
    reference = FusedEnsemble([(m.architecture, m.module) for m in members], "fp32")
    steps = 2 * len(options.precisions)
    step = 0
    for precision in options.precisions:
        fused = (
            reference
            if precision == "fp32"
            else FusedEnsemble([(m.architecture, m.module) for m in members], precision)
        )
        name = f"ensemble_{precision}.onnx"
        step += 1
        progress(f"[{step}/{steps}] exporting {name} (about 30 s per graph on 2 cores)")
        opset = export_onnx(fused, staging / name, size, opset=options.opset, max_batch=options.max_batch)
        step += 1
        progress(f"[{step}/{steps}] checking {name} against PyTorch on {len(crops)} fixed crops")
        figures = measure_parity(reference, staging / name, crops)
        check_parity(figures, tolerances[precision], name)
        staged.parity[name] = {**figures, "tolerances": vars(tolerances[precision])}
        progress(_summary(name, figures))
        staged.graphs.append(
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
        staged.files[name] = sha256_file(staging / name)
    return tuple(
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
            features_output=features_output(m.architecture.name),
        )
        for i, m in enumerate(members)
    )


def _export_detector(
    staging: Path, source: DetectorSource, options: ExportOptions, staged: _Staged, progress: Progress
) -> DetectorSpec:
    from olvf.export import detector as det

    name = "detector_fp32.onnx"
    half_name = "detector_fp16.onnx"
    path = Path(source.path)
    half_figures = None
    if path.suffix.lower() == ".onnx":
        progress(f"checking detector {path.name} (ONNX, copied as it is)")
        if not path.is_file():
            raise CheckpointError(f"detector {path} does not exist or is not a file")
        graph = det.inspect_detector(path, imgsz=source.imgsz, stride=source.stride, names=source.names)
        det.copy_onnx(path, staging / name)
        batch, _ = det.sample_inputs(graph.input_size[0], source.radiograph)
        # It must run here, on the shapes the runtime will feed it.
        for i in range(len(batch)):
            det.run_graph(staging / name, batch[i : i + 1])
        figures: dict[str, Any] = {"source": "ONNX given by the user, copied unchanged; it ran on ONNX Runtime"}
        origin = dict(source.origin or {"file": path.name, "sha256": sha256_file(path), "format": "onnx"})
        if options.precision == "fp16":
            progress("      the detector stays FP32: from an ONNX file there is no PyTorch model to export in FP16")
    else:
        if not path.is_file():
            raise CheckpointError(f"detector checkpoint {path} does not exist or is not a file")
        from olvf.export.yolov5_original import FORMAT, read_original_yolov5

        # Read without running anything: an original-repository model is rebuilt, an ultralytics one is not.
        original = read_original_yolov5(path)
        fp16_out = staging / half_name if options.precision == "fp16" else None
        common: dict[str, Any] = dict(
            imgsz=source.imgsz,
            opset=options.opset,
            radiograph=source.radiograph,
            conf=min(source.conf, 0.001),
            iou=source.iou,
            fp16_out=fp16_out,
            fp16_conf=source.conf,
            max_batch=options.max_batch,
        )
        if original is not None:
            progress(
                f"exporting detector {path.name} (original YOLOv5 repository: rebuilt by olvf from its recorded "
                f"definition and {original.weights!r} weights; no code from the file runs)"
            )
            if source.stride is not None and source.stride != original.stride:
                raise CheckpointError(
                    f"--detector-stride {source.stride} does not match {path.name}'s stride {original.stride}; "
                    "drop --detector-stride (the checkpoint records it)"
                )
            result = det.export_original_yolov5(original, staging / name, names=source.names, **common)
            origin_record: dict[str, Any] = {"format": FORMAT, **original.record()}
        else:
            progress(f"exporting detector {path.name} with ultralytics (offline)")
            result = det.export_ultralytics(path, staging / name, trust_pickle=source.trust_pickle, **common)
            origin_record = {"format": "ultralytics"}
        graph, figures, half_figures = result.graph, result.figures, result.fp16_figures
        det.check_detector_parity(figures, "fp32", name)
        if half_figures is not None:
            det.check_detector_parity(half_figures, "fp16", half_name)
        origin = dict(source.origin or {"file": path.name, "sha256": sha256_file(path), **origin_record})
        progress(
            f"      {name}: raw output max |diff| {figures['raw_max_abs_diff']:.1e}, boxes per image "
            f"{figures['boxes_per_image']}, min matched IoU {figures['min_matched_iou']:.3f}: pass"
        )
    staged.parity[name] = figures
    written = [(name, "fp32")]
    if half_figures is not None:
        staged.parity[half_name] = half_figures
        written.append((half_name, "fp16"))
        progress(
            f"      {half_name}: boxes per image {half_figures['boxes_per_image']}, min matched IoU "
            f"{half_figures['min_matched_iou']:.3f}, scores within {half_figures['max_score_diff']:.1e}: pass"
        )
    for file, precision in written:
        staged.graphs.append(
            GraphSpec(
                role="detector",
                file=file,
                precision=precision,
                opset=_opset(staging / file),
                input_name=graph.input_name,
                input_shape=("N" if graph.dynamic_batch else 1, 3, *graph.input_size),
                output_names=_output_names(staging / file),
                max_batch=options.max_batch if graph.dynamic_batch else 1,
            )
        )
        staged.files[file] = sha256_file(staging / file)
    return DetectorSpec(
        input_size=graph.input_size,
        stride=graph.stride,
        names=graph.names,
        layout=graph.layout,
        conf=source.conf,
        iou=source.iou,
        source=origin,
    )


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


def _output_names(path: Path) -> tuple[str, ...]:
    import onnx

    return tuple(o.name for o in onnx.load(str(path), load_external_data=False).graph.output)


def _summary(name: str, figures: dict[str, Any]) -> str:
    probs = max(figures["probabilities_max_abs_diff"].values())
    cams = max(figures["gradcam_max_abs_diff"].values())
    features = max(figures["features_max_rel_diff"].values())
    return (
        f"      {name}: probabilities max |diff| {probs:.1e}, top-1 agreement "
        f"{figures['top1_agreement']:.0%}, Grad-CAM max |diff| {cams:.1e}, pooled features within {features:.1e} "
        "of their largest: pass"
    )
