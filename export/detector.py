"""The vertebra detector: from either YOLOv5 lineage to a checked ONNX graph in the bundle.

- A checkpoint of the original ultralytics/yolov5 repository (``best.pt``,
  output ``(N, anchors, 5 + nc)``) is read without running code from it and
  rebuilt with olvf's own modules (:mod:`olvf.export.yolov5_original`), then
  exported to ONNX here.
- An ``ultralytics`` checkpoint (``.pt``; YOLOv5u, YOLOv8 and later heads) goes
  through the ultralytics exporter, offline: no automatic pip installs, no
  settings file in the user's home, nothing written beside the checkpoint.
  Such a checkpoint is a pickled model of a package olvf does not rebuild, so
  it needs ``trust_pickle``.
- An ONNX file of either lineage is validated and copied as it is.

Both ``.pt`` routes end in the same checks: the ONNX checker, then the
PyTorch model against ONNX Runtime on raw outputs and on boxes after NMS.
Image size, stride and class names come from the ONNX metadata the exporters
write, else from the caller, else a clear error asks for them.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from olvf.digest import sha256_file
from olvf.errors import CheckpointError, ParityError
from olvf.export.yolov5_original import DEFAULT_IMGSZ, FORMAT, OriginalYolov5
from olvf.runtime.bundle import tolerances
from olvf.runtime.bundle.config import DEFAULT_CONF
from olvf.runtime.checks.verify import compare_detections, detector_problems
from olvf.runtime.runners.onnxruntime import OnnxRuntimeRunner
from olvf.runtime.steps.detection import Letterbox, letterbox


@dataclass(frozen=True)
class DetectorGraph:
    """What an ONNX detector is, read from the file and the user's flags."""

    input_name: str
    input_size: tuple[int, int]
    stride: int
    names: tuple[str, ...]
    layout: str
    dynamic_batch: bool


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _parse_names(text: str) -> tuple[str, ...]:
    value = ast.literal_eval(text)  # both exporters write a Python dict/list literal
    if isinstance(value, dict):
        return tuple(str(value[k]) for k in sorted(value))
    return tuple(str(v) for v in value)


def inspect_detector(
    path: Path,
    *,
    imgsz: int | None = None,
    stride: int | None = None,
    names: tuple[str, ...] | None = None,
) -> DetectorGraph:
    """Validate a detector ONNX file and work out its input size, stride, classes and layout."""
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf decode errors and checker failures have many types
        raise CheckpointError(f"{path} is not a valid ONNX model ({str(exc).splitlines()[0][:150]})") from None
    meta = _metadata(model)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) < 1:
        raise CheckpointError(f"{path}: a detector has one image input and a detections output")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] not in (3, None):
        raise CheckpointError(f"{path}: input {inputs[0].name} is not (N, 3, H, W)")

    if names is None and "names" in meta:
        names = _parse_names(meta["names"])
    if stride is None and "stride" in meta:
        stride = int(float(meta["stride"]))
    if imgsz is None:
        if "imgsz" in meta:
            imgsz = max(ast.literal_eval(meta["imgsz"]))
        elif dims[2] and dims[3]:
            imgsz = max(dims[2], dims[3])
    missing = [
        flag
        for flag, value in (("--detector-names", names), ("--detector-stride", stride), ("--detector-imgsz", imgsz))
        if not value
    ]
    if missing:
        raise CheckpointError(
            f"{path} does not record its {', '.join(f[11:] for f in missing)}; pass {' and '.join(missing)} "
            "(the values it was trained and exported with)"
        )
    assert names is not None and stride is not None and imgsz is not None
    if imgsz % stride:
        raise CheckpointError(f"{path}: image size {imgsz} is not a multiple of the stride {stride}")
    if dims[2] and dims[3] and (dims[2], dims[3]) != (imgsz, imgsz):
        raise CheckpointError(f"{path}: the graph's fixed input {dims[2]}x{dims[3]} is not square {imgsz}")

    out = [d.dim_value if d.HasField("dim_value") else None for d in model.graph.output[0].type.tensor_type.shape.dim]
    nc = len(names)
    if len(out) == 3 and out[1] == 4 + nc:
        layout = "yolov8"
    elif len(out) == 3 and out[2] == 5 + nc:
        layout = "yolov5"
    else:
        raise CheckpointError(
            f"{path}: output shape {out} is neither (N, 4+nc, anchors) (ultralytics/YOLOv8) nor "
            f"(N, anchors, 5+nc) (original YOLOv5) for {nc} classes {list(names)}; check --detector-names"
        )
    return DetectorGraph(inputs[0].name, (imgsz, imgsz), stride, tuple(names), layout, dims[0] is None)


@contextlib.contextmanager
def temporary_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore exactly what was there (set or unset)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _offline_ultralytics() -> Iterator[Path]:
    """A scratch folder and an environment in which ultralytics neither downloads, installs nor writes home."""
    scratch = Path(tempfile.mkdtemp(prefix="olvf-ultralytics-"))
    offline = {
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "False",
        "YOLO_CONFIG_DIR": str(scratch / "config"),
        "YOLO_VERBOSE": "False",
        # matplotlib, which ultralytics imports, would otherwise put its cache in the home folder.
        "MPLCONFIGDIR": str(scratch / "matplotlib"),
    }
    try:
        with temporary_environ(offline):
            yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _load_ultralytics(pt_path: Path) -> Any:
    """An ultralytics ``YOLO`` model, refusing the original yolov5 lineage with the way out."""
    try:
        from ultralytics import YOLO
    except ImportError:
        raise CheckpointError("exporting a .pt detector needs ultralytics: pip install 'olvf[export]'") from None
    try:
        model = YOLO(str(pt_path), task="detect")
    except Exception as exc:  # ultralytics raises TypeError, ModuleNotFoundError, AttributeError, ...
        text = str(exc)
        first = text.splitlines()[0][:150] if text else type(exc).__name__
        raise CheckpointError(f"{pt_path.name} is not an ultralytics detector checkpoint ({first})") from None
    if getattr(model, "task", "detect") != "detect":
        raise CheckpointError(f"{pt_path.name} is a {model.task} model, not a detector")
    return model


def _trained_imgsz(model: Any) -> int | None:
    args = (getattr(model, "ckpt", None) or {}).get("train_args", {}) or {}
    size = args.get("imgsz") or getattr(model, "overrides", {}).get("imgsz")
    if isinstance(size, (list, tuple)):
        size = max(size)
    return int(size) if size else None


@dataclass(frozen=True)
class DetectorExport:
    """A detector graph written and measured against its PyTorch source (FP16 figures when one was made)."""

    graph: DetectorGraph
    figures: dict[str, Any]
    fp16_figures: dict[str, Any] | None = None


def export_ultralytics(
    pt_path: Path,
    out: Path,
    *,
    imgsz: int | None,
    opset: int,
    trust_pickle: bool,
    radiograph: np.ndarray | None,
    conf: float,
    iou: float,
    fp16_out: Path | None = None,
    fp16_conf: float = DEFAULT_CONF,
    max_batch: int = 32,
) -> DetectorExport:
    """Export ``pt_path`` to ``out`` (ONNX, dynamic batch) and compare it with the PyTorch model.

    With ``fp16_out`` an FP16 graph is written there too and compared at the
    operating threshold ``fp16_conf``.
    """
    if not trust_pickle:
        raise CheckpointError(
            f"{pt_path} is an ultralytics checkpoint, which is a pickled model: loading it runs code from the file. "
            "Re-run with --trust-pickle if you trust where it came from, or pass an ONNX export of it instead"
        )
    if not pt_path.is_file():
        raise CheckpointError(f"detector checkpoint {pt_path} does not exist or is not a file")
    import torch

    with _offline_ultralytics() as scratch, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Exporters write beside their input: work on a copy so nothing lands beside the user's file.
        pt_copy = scratch / "detector.pt"
        shutil.copyfile(pt_path, pt_copy)
        model = _load_ultralytics(pt_copy)
        size = imgsz or _trained_imgsz(model) or 640
        try:
            written = model.export(format="onnx", dynamic=True, imgsz=size, simplify=True, opset=opset, batch=1)
        except Exception as exc:  # exporter internals raise many types
            raise CheckpointError(
                f"{pt_path.name}: ultralytics' ONNX export failed ({str(exc).splitlines()[0][:150]})"
            ) from None
        shutil.move(str(written), out)
        graph = inspect_detector(out, imgsz=size)
        batch, _ = sample_inputs(size, radiograph)
        network = _load_ultralytics(pt_copy).model.float().eval()
        with torch.no_grad():
            expected = network(torch.from_numpy(batch))
        expected = (expected[0] if isinstance(expected, (tuple, list)) else expected).numpy()
        if fp16_out is not None:
            from olvf.export.detector_fp16 import export_fp16_detector

            export_fp16_detector(network, fp16_out, imgsz=size, opset=opset, max_batch=max_batch)
    return measure_graphs(graph, expected, batch, out, conf=conf, iou=iou, fp16_out=fp16_out, fp16_conf=fp16_conf)


def measure_graphs(
    graph: DetectorGraph,
    expected: np.ndarray,
    batch: np.ndarray,
    out: Path,
    *,
    conf: float,
    iou: float,
    fp16_out: Path | None,
    fp16_conf: float,
) -> DetectorExport:
    """Run the written graph(s) on ``batch`` and compare with PyTorch's raw output ``expected``."""
    got = run_graph(out, batch)
    figures = compare_detections(expected, got, graph.layout, len(graph.names), conf=conf, iou=iou)
    figures["raw_max_abs_diff"] = float(np.abs(expected - got).max())
    fp16_figures = None
    if fp16_out is not None:
        half = run_graph(fp16_out, batch)
        fp16_figures = compare_detections(expected, half, graph.layout, len(graph.names), conf=fp16_conf, iou=iou)
        fp16_figures["raw_max_abs_diff"] = float(np.abs(expected - half).max())
    return DetectorExport(graph, figures, fp16_figures)


def export_original_yolov5(
    source: OriginalYolov5,
    out: Path,
    *,
    imgsz: int | None,
    names: tuple[str, ...] | None,
    opset: int,
    radiograph: np.ndarray | None,
    conf: float,
    iou: float,
    fp16_out: Path | None = None,
    fp16_conf: float = DEFAULT_CONF,
    max_batch: int = 32,
) -> DetectorExport:
    """Export a detector rebuilt from an original-repository checkpoint to ``out`` and measure it.

    The graph has the repository's own ONNX layout and metadata: input
    ``images`` (N, 3, S, S), output ``output0`` (N, anchors, 5 + nc), the
    stride, class names and image size in the file.
    """
    import torch

    from olvf.export.detector_onnx import export_detector_onnx

    size = imgsz or source.trained_imgsz or DEFAULT_IMGSZ
    if size % source.stride:
        raise CheckpointError(
            f"image size {size} is not a multiple of the detector's stride {source.stride}; "
            f"pass --detector-imgsz with a multiple of {source.stride}"
        )
    if names is not None and len(names) != len(source.names):
        raise CheckpointError(
            f"--detector-names gives {len(names)} classes but the checkpoint's head has {len(source.names)} "
            f"({', '.join(source.names)})"
        )
    class_names = tuple(names) if names is not None else source.names
    export_detector_onnx(source.network, out, imgsz=size, opset=opset, max_batch=max_batch)
    _write_metadata(
        out,
        {
            "stride": str(source.stride),
            "names": repr(dict(enumerate(class_names))),
            "imgsz": repr([size, size]),
            "olvf.source": FORMAT,
        },
    )
    graph = inspect_detector(out)
    if graph.layout != "yolov5" or not graph.dynamic_batch:
        raise CheckpointError(f"the exported graph has layout {graph.layout}, not the original (N, anchors, 5+nc)")
    batch, _ = sample_inputs(size, radiograph)
    with torch.no_grad():
        expected = source.network(torch.from_numpy(batch)).numpy()
    if fp16_out is not None:
        export_detector_onnx(source.network, fp16_out, imgsz=size, opset=opset, max_batch=max_batch, half=True)
    return measure_graphs(graph, expected, batch, out, conf=conf, iou=iou, fp16_out=fp16_out, fp16_conf=fp16_conf)


def _write_metadata(path: Path, values: dict[str, str]) -> None:
    """Add ``values`` to the file's metadata, then hold it to the full ONNX checker."""
    model = onnx.load(str(path))
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise CheckpointError(f"exported detector fails the ONNX checker: {str(exc).splitlines()[0][:200]}") from None


def sample_inputs(imgsz: int, radiograph: np.ndarray | None, seed: int = 0) -> tuple[np.ndarray, list[Letterbox]]:
    """Detector parity inputs: the radiograph given (a phantom) and random noise, letterboxed."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (imgsz * 3 // 4, imgsz), dtype=np.uint8).astype(np.float32) / 255]
    if radiograph is not None:
        images.insert(0, radiograph.astype(np.float32))
    boxed = [letterbox(image, (imgsz, imgsz)) for image in images]
    return np.stack([b[0] for b in boxed]), [b[1] for b in boxed]


def check_detector_parity(figures: dict[str, Any], precision: str, graph: str) -> None:
    """Refuse a detector graph whose boxes differ from its source."""
    problems = detector_problems(figures, tolerances.detector(precision))
    if problems:
        raise ParityError(f"{graph} does not match its source: {'; '.join(problems)}; no bundle was written")


def copy_onnx(source: Path, out: Path) -> str:
    shutil.copyfile(source, out)
    return sha256_file(out)


def run_graph(path: Path, batch: np.ndarray) -> np.ndarray:
    with OnnxRuntimeRunner(path) as runner:
        spec = runner.inputs[0]
        outputs = runner.run({spec.name: batch.astype(spec.dtype)})
    return next(iter(outputs.values())).astype(np.float32)
