"""The ONNX graph behind every fake engine: ONNX Runtime sessions and what a graph's inputs and nodes are."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from tensorrt._core import DataType

# --- ONNX graphs -----------------------------------------------------------------------------------------------

_ORT_TYPES = {
    "tensor(float)": DataType.FLOAT,
    "tensor(float16)": DataType.HALF,
    "tensor(bfloat16)": DataType.BF16,
    "tensor(int64)": DataType.INT64,
    "tensor(int32)": DataType.INT32,
    "tensor(int8)": DataType.INT8,
    "tensor(uint8)": DataType.UINT8,
    "tensor(bool)": DataType.BOOL,
}
_ONNX_ELEM_TYPES = {
    1: DataType.FLOAT,
    2: DataType.UINT8,
    3: DataType.INT8,
    6: DataType.INT32,
    7: DataType.INT64,
    9: DataType.BOOL,
    10: DataType.HALF,
    16: DataType.BF16,
}
_SKIPPED_OPS = {"Constant", "Identity"}

_sessions: dict[str, Any] = {}
_graphs: dict[str, dict[str, Any]] = {}


def _session(onnx_bytes: bytes, digest: str) -> Any:
    if digest not in _sessions:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        _sessions[digest] = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    return _sessions[digest]


def _symbolic(shape: Sequence[Any]) -> list[Any]:
    """ORT's declared shape: ints, dimension names (str) or None for unknown."""
    return [d if isinstance(d, (int, str)) or d is None else None for d in shape]


def _engine_dims(shape: Sequence[Any]) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


def _analyse(onnx_bytes: bytes) -> dict[str, Any]:
    """Inputs, outputs (declared shapes and types) and per-node tensor types of an ONNX graph."""
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    if digest in _graphs:
        return _graphs[digest]
    session = _session(onnx_bytes, digest)
    io: list[dict[str, Any]] = []
    for mode, args in (
        ("input", session.get_inputs()),
        ("output", session.get_outputs()),
    ):
        for arg in args:
            if arg.type not in _ORT_TYPES:
                raise ValueError(f"{mode} {arg.name} has type {arg.type}, which TensorRT does not support")
            io.append(
                {
                    "name": arg.name,
                    "mode": mode,
                    "dtype": _ORT_TYPES[arg.type].name,
                    "shape": _symbolic(arg.shape),
                }
            )
    graph = {"sha256": digest, "io": io, "nodes": _nodes(onnx_bytes)}
    _graphs[digest] = graph
    return graph


def _nodes(onnx_bytes: bytes) -> list[dict[str, Any]] | None:
    """Each node's op and tensors (name, dims, type), from ONNX shape inference; None without ``onnx``."""
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        return None
    model = shape_inference.infer_shapes(onnx.load_model_from_string(onnx_bytes))
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    tensors: dict[str, tuple[list[int], str]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        dtype = _ONNX_ELEM_TYPES.get(tensor_type.elem_type)
        if dtype is None:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
        tensors[value.name] = (dims, dtype.name)

    def described(names: Iterable[str]) -> list[dict[str, Any]]:
        return [
            {"name": n, "dims": tensors[n][0], "dtype": tensors[n][1]}
            for n in names
            if n and n not in initializers and n in tensors
        ]

    nodes = []
    for index, node in enumerate(graph.node):
        if node.op_type in _SKIPPED_OPS:
            continue
        nodes.append(
            {
                "name": node.name or f"{node.op_type}_{index}",
                "op": node.op_type,
                "inputs": described(node.input),
                "outputs": described(node.output),
            }
        )
    return nodes
