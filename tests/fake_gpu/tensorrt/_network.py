"""Networks and the ONNX parser."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tensorrt._core import (
    _MAJOR,
    DataType,
    ErrorCode,
    NetworkDefinitionCreationFlag,
    TensorLocation,
)
from tensorrt._logging import ILogger, _log
from tensorrt._onnx import _analyse, _engine_dims
from tensorrt._types import Dims, _to_bytes

# --- network and parser ----------------------------------------------------------------------------------------


class ITensor:
    def __init__(self, name: str, shape: Sequence[int], dtype: DataType, is_input: bool) -> None:
        self.name = name
        self.shape = Dims(shape)
        self.dtype = dtype
        self.is_network_input = is_input
        self.is_network_output = not is_input
        self.location = TensorLocation.DEVICE

    def __repr__(self) -> str:
        return f"ITensor(name={self.name!r}, shape={self.shape}, dtype={self.dtype})"


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self._flags = int(flags)
        self.name = "Unnamed Network 0"
        self._onnx: bytes | None = None
        self._graph: dict[str, Any] | None = None
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []

    @property
    def _strongly_typed(self) -> bool:
        if _MAJOR >= 11:
            return True  # TensorRT 11: always, whatever the flags
        return bool(self._flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))

    def get_flag(self, flag: Any) -> bool:
        if int(flag) == int(NetworkDefinitionCreationFlag.STRONGLY_TYPED):
            return self._strongly_typed
        return bool(self._flags & (1 << int(flag)))

    @property
    def flags(self) -> int:
        return self._flags

    @property
    def has_implicit_batch_dimension(self) -> bool:
        return False

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    @property
    def num_layers(self) -> int:
        nodes = self._graph["nodes"] if self._graph else None
        return len(nodes) if nodes is not None else (1 if self._graph else 0)

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    def _load(self, onnx_bytes: bytes, graph: dict[str, Any]) -> None:
        self._onnx = onnx_bytes
        self._graph = graph
        for tensor in graph["io"]:
            made = ITensor(
                tensor["name"],
                _engine_dims(tensor["shape"]),
                DataType[tensor["dtype"]],
                tensor["mode"] == "input",
            )
            (self._inputs if made.is_network_input else self._outputs).append(made)


class ParserError:
    def __init__(self, code: ErrorCode, desc: str, func: str, node: int = -1) -> None:
        self._code, self._desc, self._func, self._node = code, desc, func, node

    def code(self) -> ErrorCode:
        return self._code

    def desc(self) -> str:
        return self._desc

    def file(self) -> str:
        return "ModelImporter.cpp"

    def func(self) -> str:
        return self._func

    def line(self) -> int:
        return 0

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return ""

    def node_operator(self) -> str:
        return ""

    def __str__(self) -> str:
        return f"In node {self._node} with name:  and operator:  ({self._func}): {self._code.name}: {self._desc}"

    __repr__ = __str__


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Any) -> None:
        self.network = network
        self.logger = logger
        self._errors: list[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError | None:
        return self._errors[index] if 0 <= index < len(self._errors) else None

    def clear_errors(self) -> None:
        self._errors.clear()

    def _fail(self, code: ErrorCode, desc: str, func: str) -> bool:
        error = ParserError(code, desc, func)
        self._errors.append(error)
        _log(self.logger, ILogger.Severity.ERROR, str(error))
        return False

    def parse_from_file(self, model: str) -> bool:
        try:
            onnx_bytes = _load_onnx_file(model)
        except OSError as error:
            return self._fail(
                ErrorCode.INVALID_VALUE,
                f"Failed to open file: {model} ({error})",
                "parseFromFile",
            )
        return self._parse(onnx_bytes, model, "parseFromFile")

    def parse(self, model: Any, path: str | None = None) -> bool:
        return self._parse(_to_bytes(model), path or "<buffer>", "parse")

    def _parse(self, onnx_bytes: bytes, where: str, func: str) -> bool:
        if self.network._graph is not None:
            return self._fail(
                ErrorCode.INVALID_GRAPH,
                "the network already holds a parsed model",
                func,
            )
        try:
            graph = _analyse(onnx_bytes)
        except Exception as error:  # noqa: BLE001 - whatever ONNX Runtime refuses, TensorRT refuses too
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return self._fail(
                ErrorCode.MODEL_DESERIALIZE_FAILED,
                f"Failed to parse ONNX model {where}: {first_line}",
                func,
            )
        self.network._load(onnx_bytes, graph)
        return True


def _load_onnx_file(path: str) -> bytes:
    """The model as one protobuf; external data (if any) is pulled in when ``onnx`` is importable."""
    with open(path, "rb") as stream:
        raw = stream.read()
    try:
        import onnx
    except ImportError:
        return raw
    try:
        model = onnx.load_model_from_string(raw)
    except Exception:  # noqa: BLE001 - not ONNX: let the parser report it
        return raw
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        return onnx.load(path).SerializeToString()
    return raw
