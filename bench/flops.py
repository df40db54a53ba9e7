"""Operation counts read from the ONNX graphs themselves (multiply-adds x 2 = FLOP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference


def _static(model: onnx.ModelProto, batch: int, size: tuple[int, int] | None) -> onnx.ModelProto:
    """Fix the batch (and, for detectors exported with dynamic sizes, H and W) so shapes become concrete."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {i.name for i in model.graph.initializer}
    for node in model.graph.input:
        if node.name in initializers:
            continue
        dims = node.type.tensor_type.shape.dim
        for index, value in ((0, batch), *((i + 2, v) for i, v in enumerate(size or ()))):
            if not dims[index].HasField("dim_value"):
                dims[index].ClearField("dim_param")
                dims[index].dim_value = value
    del model.graph.value_info[:]
    return shape_inference.infer_shapes(model, data_prop=True)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for value in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def graph_flops(path: Path, batch: int = 1, size: tuple[int, int] | None = None) -> float:
    """FLOP of one run of the graph at ``batch`` (convolutions and matrix products; the rest is negligible)."""
    model = _static(onnx.load(str(path)), batch, size)
    shapes = _shapes(model)
    total = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if node.op_type == "Conv" and out is not None and node.input[1] in shapes:
            weight = shapes[node.input[1]]  # (Cout, Cin/groups, kh, kw)
            total += int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul") and out is not None and node.input[0] in shapes:
            total += int(np.prod(out)) * shapes[node.input[0]][-1]
    return 2.0 * total
