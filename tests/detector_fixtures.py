"""Detectors made by the tests: a small ultralytics checkpoint and original-YOLOv5-layout ONNX graphs."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5")


def ultralytics_checkpoint(path: Path, imgsz: int = 320, seed: int = 0) -> Path:
    """A YOLOv5u-nano detector with one class per level, saved as ultralytics saves checkpoints.

    Random weights, with BatchNorm statistics calibrated on random images
    (uncalibrated, activations fade to nothing within a few layers) and a
    raised class bias, so that it reports confident, distinct boxes: parity is
    then checked on many boxes, not on none or on a sea of ties.
    """
    if "YOLO_CONFIG_DIR" not in os.environ:
        settings = tempfile.mkdtemp(prefix="olvf-test-yolo-")
        atexit.register(shutil.rmtree, settings, ignore_errors=True)  # leave no folders in /tmp behind
        os.environ["YOLO_CONFIG_DIR"] = settings
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from olvf.export.demo import calibrate_batchnorm

    torch.manual_seed(seed)
    model = DetectionModel("yolov5nu.yaml", nc=len(LEVELS), verbose=False)
    model.names = dict(enumerate(LEVELS))
    with torch.no_grad():
        for branch in model.model[-1].cv3:
            branch[-1].bias.fill_(-2.0)
    calibrate_batchnorm(model, torch.rand(4, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(seed)))
    torch.save({"model": model.half(), "train_args": {"imgsz": imgsz}}, path)
    return path


def legacy_yolov5_onnx(
    path: Path,
    rows: np.ndarray,
    *,
    imgsz: int = 320,
    names: tuple[str, ...] | None = ("vertebra",),
    dynamic: bool = True,
) -> Path:
    """An ONNX graph shaped like ultralytics/yolov5 export.py's: (N, 3, S, S) -> (N, A, 5 + nc).

    Its output is ``rows`` (A, 5 + nc) for every image (a constant detection
    head), with the metadata export.py writes (stride, names).
    """
    batch = "batch" if dynamic else 1
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, imgsz, imgsz])
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, rows.shape[0], rows.shape[1]])
    nodes = [
        helper.make_node("ReduceMean", ["images", "axes"], ["mean"], keepdims=1),
        helper.make_node("Reshape", ["mean", "shape"], ["per_image"]),
        helper.make_node("Mul", ["per_image", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "rows"], ["output0"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        numpy_helper.from_array(rows[None].astype(np.float32), "rows"),
    ]
    graph = helper.make_graph(nodes, "yolov5", [images], [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    metadata = {"stride": "32"}
    if names is not None:
        metadata["names"] = repr(dict(enumerate(names)))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def original_yolov5_checkpoint(path: Path) -> Path:
    """A pickle that needs the yolov5 repository's ``models.yolo`` module, as its checkpoints do."""
    import torch

    module = types.ModuleType("models.yolo")
    package = types.ModuleType("models")

    class DetectionModel(torch.nn.Module):
        pass

    DetectionModel.__module__ = "models.yolo"
    DetectionModel.__qualname__ = "DetectionModel"
    module.DetectionModel = DetectionModel
    sys.modules["models"], sys.modules["models.yolo"] = package, module
    try:
        torch.save({"model": DetectionModel(), "epoch": 299}, path)
    finally:
        del sys.modules["models"], sys.modules["models.yolo"]
    return path
