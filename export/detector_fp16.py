"""An FP16 detector graph with its precision written into the graph, as TensorRT 11 needs.

ultralytics exports FP16 ONNX only on a GPU, and converting an FP32 ONNX file
after the fact (onnxconverter-common) breaks on the Resize and Cast nodes of
current YOLO graphs. So the PyTorch detector is exported again with the
weights in half precision and explicit casts at the edges: input FP32 -> FP16,
output FP16 -> FP32 (:func:`olvf.export.detector_onnx.export_detector_onnx`).
Box decoding of an ultralytics head runs in FP16 as well; at 640 px that
rounds coordinates to at most 0.5 px, which the parity gate's IoU tolerance
allows. (olvf's rebuild of an original YOLOv5 model decodes in FP32.)
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any

from torch import nn

from olvf.export.detector_onnx import export_detector_onnx


def _export_mode(network: nn.Module) -> nn.Module:
    """A fused copy whose detection head returns only the decoded boxes, as in ultralytics' own export."""
    model: Any = copy.deepcopy(network).float().eval()  # ultralytics' own attributes, untyped
    if hasattr(model, "fuse"):
        with contextlib.redirect_stdout(io.StringIO()):
            model = model.fuse()
    head = model.model[-1]
    head.export, head.format, head.dynamic = True, "onnx", True
    return model


def export_fp16_detector(network: nn.Module, out: Path, *, imgsz: int, opset: int, max_batch: int) -> None:
    """Write the FP16 graph of an ultralytics DetectionModel to ``out`` (input ``images``, output ``output0``)."""
    export_detector_onnx(_export_mode(network), out, imgsz=imgsz, opset=opset, max_batch=max_batch, half=True)
