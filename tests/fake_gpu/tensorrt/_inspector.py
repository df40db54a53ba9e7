"""Engine information, spelled as TensorRT 10 or 11 spells it."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from tensorrt._core import _MAJOR, LayerInformationFormat, ProfilingVerbosity
from tensorrt._onnx import _engine_dims

if TYPE_CHECKING:  # _engine makes inspectors: only the annotations name its types
    from tensorrt._engine import ICudaEngine, IExecutionContext

# --- engine information ----------------------------------------------------------------------------------------

_CASK_TYPES = {
    "Conv": ("CaskConvolution", "Convolution"),
    "ConvTranspose": ("CaskDeconvolution", "Deconvolution"),
    "Gemm": ("CaskGemmConvolution", "Convolution"),
    "MatMul": ("CaskGemmMatrixMultiply", "MatrixMultiply"),
    "MaxPool": ("CaskPooling", "Pooling"),
    "AveragePool": ("CaskPooling", "Pooling"),
    "GlobalAveragePool": ("CaskPooling", "Pooling"),
    "GlobalMaxPool": ("CaskPooling", "Pooling"),
    "Softmax": ("CaskSoftMaxV2", "SoftMax"),
    "Reshape": ("Shuffle", "Shuffle"),
    "Flatten": ("Shuffle", "Shuffle"),
    "Transpose": ("Shuffle", "Shuffle"),
    "Squeeze": ("Shuffle", "Shuffle"),
    "Unsqueeze": ("Shuffle", "Shuffle"),
    "Cast": ("Cast", "Cast"),
    "Concat": ("NoOp", "Concatenation"),
    "Resize": ("Resize", "Resize"),
    "ReduceMean": ("Reduce", "Reduce"),
    "ReduceSum": ("Reduce", "Reduce"),
    "ReduceMax": ("Reduce", "Reduce"),
    "Reformat": ("Reformat", "Reformat"),
}
_KGEN_NAMES = {
    "FLOAT": "Float",
    "HALF": "Half",
    "BF16": "BFloat16",
    "INT64": "Int64",
    "INT32": "Int32",
    "INT8": "Int8",
    "UINT8": "UInt8",
    "BOOL": "Bool",
}


def _cask_format(dtype: str, rank: int) -> str:
    """TensorRT 10's long format descriptions, as in its DETAILED engine information."""
    if dtype == "HALF":
        return "Channel major FP16 format where channel % 8 == 0" if rank == 4 else "Row major linear FP16 format"
    return {
        "FLOAT": "Row major linear FP32",
        "BF16": "Row major linear BFloat16 format",
        "INT64": "Row major linear Int64 format",
        "INT32": "Row major linear Int32",
        "INT8": "Row major Int8 format",
        "UINT8": "Row major linear UInt8 format",
        "BOOL": "Row major linear BOOL",
    }.get(dtype, "Unknown format")


def _trt11_format(dtype: str, rank: int) -> str:
    if dtype == "HALF" and rank == 4:
        return "Channel major FP16 format where channel % 8 == 0 (kHWC8)"
    label = {"FLOAT": "FP32", "HALF": "FP16", "BF16": "BFloat16"}.get(dtype, _KGEN_NAMES.get(dtype, dtype))
    return f"Row major linear {label} format (kLINEAR)"


# TensorRT 11 spellings olvf does not know (the "opaque" style): an engine whose inspector output olvf cannot read.
_OPAQUE_NAMES = {"FLOAT": "Float32", "HALF": "Float16", "BF16": "BFloat16"}


def _render_tensor(tensor: dict[str, Any], style: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "Name": tensor["name"],
        "Location": "Device",
        "Dimensions": tensor["dims"],
    }
    rank = len(tensor["dims"])
    if style == "opaque":
        entry["Format"] = "kHWC8" if tensor["dtype"] == "HALF" and rank == 4 else "kLINEAR"
        entry["DataType"] = _OPAQUE_NAMES.get(tensor["dtype"], _KGEN_NAMES.get(tensor["dtype"], tensor["dtype"]))
    elif style == "documented":
        entry["Format"] = _trt11_format(tensor["dtype"], rank)
        entry["DataType"] = _KGEN_NAMES.get(tensor["dtype"], tensor["dtype"])
    elif style == "kgen":
        entry["Format/Datatype"] = _KGEN_NAMES.get(tensor["dtype"], tensor["dtype"])
    else:
        entry["Format/Datatype"] = _cask_format(tensor["dtype"], rank)
    return entry


def _render_layer(layer: dict[str, Any], index: int, style: str) -> dict[str, Any]:
    if style == "kgen" and layer["op"] != "Reformat" and _MAJOR < 11:
        name, layer_type, parameter_type = f"__myl_{layer['op']}_{index}", "kgen", None
    else:
        layer_type, parameter_type = _CASK_TYPES.get(layer["op"], ("PointWiseV2", "PointWise"))
        name = layer["name"]
    rendered: dict[str, Any] = {"Name": name, "LayerType": layer_type}
    if parameter_type is not None:
        rendered["ParameterType"] = parameter_type
    rendered["Inputs"] = [_render_tensor(t, style) for t in layer["inputs"]]
    rendered["Outputs"] = [_render_tensor(t, style) for t in layer["outputs"]]
    rendered["TacticValue"] = f"0x{int(hashlib.sha256(name.encode()).hexdigest()[:16], 16):016x}"
    rendered["StreamId"] = 0
    rendered["Metadata"] = f"[ONNX Layer: {layer['onnx']}]"
    return rendered


class EngineInspector:
    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine
        self.execution_context: IExecutionContext | None = None
        self.error_recorder = None

    def _layers(self) -> list[Any]:
        meta = self._engine._meta
        verbosity = ProfilingVerbosity(meta["profiling_verbosity"])
        style = meta["layer_style"]
        rendered = [_render_layer(layer, i, style) for i, layer in enumerate(meta["layers"])]
        if verbosity == ProfilingVerbosity.DETAILED:
            return rendered
        if verbosity == ProfilingVerbosity.LAYER_NAMES_ONLY:
            return [layer["Name"] for layer in rendered]
        return []

    def _io(self) -> dict[str, Any]:
        engine = self._engine
        if _MAJOR < 11:
            return {"Bindings": [t["name"] for t in engine._io]}
        tensors = []
        for tensor in engine._io:
            entry: dict[str, Any] = {
                "Name": tensor["name"],
                "IOMode": "Input" if tensor["mode"] == "input" else "Output",
                "DataType": _KGEN_NAMES.get(tensor["dtype"], tensor["dtype"]),
                "Dimensions": _engine_dims(tensor["shape"]),
                "Location": "Device",
                "IsShapeInferenceIO": False,
            }
            if tensor["mode"] == "input":
                entry["ProfileInfo"] = [
                    {
                        "MinShape": p[tensor["name"]][0],
                        "OptShape": p[tensor["name"]][1],
                        "MaxShape": p[tensor["name"]][2],
                        "Format": _trt11_format(tensor["dtype"], len(tensor["shape"])),
                    }
                    for p in engine._meta["profiles"]
                ]
            tensors.append(entry)
        return {"I/O Tensors": tensors}

    def get_layer_information(self, layer_index: int, format: Any) -> str:  # noqa: A002 - TensorRT's name
        layers = self._layers()
        if not 0 <= layer_index < len(layers):
            return ""
        layer = layers[layer_index]
        if format == LayerInformationFormat.JSON:
            return json.dumps(layer)
        return layer if isinstance(layer, str) else layer["Name"]

    def get_engine_information(self, format: Any) -> str:  # noqa: A002
        layers = self._layers()
        if format == LayerInformationFormat.JSON:
            return json.dumps({"Layers": layers, **self._io()}, indent=1)
        return "\n".join(layer if isinstance(layer, str) else layer["Name"] for layer in layers)
