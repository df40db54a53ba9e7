"""A PyTorch detector -> ONNX with a dynamic batch: input ``images`` (N, 3, S, S), output ``output0``.

Used for the FP16 graph of either lineage and for the FP32 graph of a model
rebuilt from the original YOLOv5 repository's checkpoint. ``half`` puts the
precision into the graph, as TensorRT 11 needs: the weights in FP16 and
explicit casts at the edges (input FP32 -> FP16, output -> FP32).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from olvf.errors import OlvfError

INPUT_NAME = "images"
OUTPUT_NAME = "output0"


class _HalfDetector(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = copy.deepcopy(network).half().eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.network(images.half())
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.float()


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence a library's logger for the block (onnxscript's optimizer warns about ops it leaves unfolded)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_detector_onnx(
    network: nn.Module, out: Path, *, imgsz: int, opset: int, max_batch: int, half: bool = False
) -> None:
    """Write ``network`` (a module returning the raw detections, or a tuple starting with them) to ``out``."""
    module = _HalfDetector(network) if half else network.eval()
    example = torch.zeros(2, 3, imgsz, imgsz)
    batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
    try:
        # The exporter prints progress and warnings meant for its own developers.
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            _quiet("onnxscript"),
            torch.no_grad(),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(out),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamo=True,
                dynamic_shapes=({0: batch},),
                external_data=False,
                opset_version=opset,
                verbose=False,
            )
    except Exception as exc:  # exporter internals raise many types
        raise OlvfError(
            f"{'FP16' if half else 'FP32'} detector export failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]})" + ("; export with --precision fp32" if half else "")
        ) from exc
