"""An FP16 detector graph with its precision written into the graph, as TensorRT 11 needs.

ultralytics exports FP16 ONNX only on a GPU, and converting an FP32 ONNX file
after the fact (onnxconverter-common) breaks on the Resize and Cast nodes of
current YOLO graphs. So the PyTorch detector is exported again with the
weights in half precision and explicit casts at the edges: input FP32 -> FP16,
output FP16 -> FP32. Box decoding runs in FP16 as well; at 640 px that rounds
coordinates to at most 0.5 px, which the parity gate's IoU tolerance allows.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from olvf.errors import OlvfError


class _HalfDetector(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = copy.deepcopy(network).half().eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.network(images.half())
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.float()


def _export_mode(network: nn.Module) -> nn.Module:
    """A fused copy whose detection head returns only the decoded boxes, as in ultralytics' own export."""
    model = copy.deepcopy(network).float().eval()
    if hasattr(model, "fuse"):
        with contextlib.redirect_stdout(io.StringIO()):
            model = model.fuse()
    head = model.model[-1]
    head.export, head.format, head.dynamic = True, "onnx", True
    return model


def export_fp16_detector(network: nn.Module, out: Path, *, imgsz: int, opset: int, max_batch: int) -> None:
    """Write the FP16 graph of an ultralytics DetectionModel to ``out`` (input ``images``, output ``output0``)."""
    half = _HalfDetector(_export_mode(network))
    example = torch.zeros(2, 3, imgsz, imgsz)
    batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                half,
                (example,),
                str(out),
                input_names=["images"],
                output_names=["output0"],
                dynamo=True,
                dynamic_shapes=({0: batch},),
                external_data=False,
                opset_version=opset,
                verbose=False,
            )
    except Exception as exc:  # exporter internals raise many types
        raise OlvfError(
            f"FP16 detector export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
            "export with --precision fp32"
        ) from exc
