"""A fake ``tensorrt`` for tests: NOT TensorRT, and never to be used in production.

What this is
    A test double of the part of the TensorRT 10 / 11 Python API that olvf uses, so that olvf's engine
    builder and TensorRT runner run in CI on machines without a GPU or TensorRT. The "engine" is the ONNX
    graph itself, run on CPU by ONNX Runtime; "device" memory and streams come from the fake
    ``cuda.bindings.runtime`` next to this package (``tests/fake_gpu/cuda``).

Checked against the real bindings
    ``tests/fake_gpu/surface`` records the real TensorRT Python API (PyPI's ``tensorrt-cu12-bindings``
    10.3 to 11.4, imported with stand-in libraries; ``record_surface.py``). The enums here ARE those
    records (the nearest recorded version at or below the one asked for, same major), and
    ``tests/runtime/test_fake_gpu_surface.py`` checks every class, method name, parameter name and the
    behaviour that can be observed without a GPU against them. What no record can show (what a real
    build produces) is modelled as described below and says so.

How to use it
    Put ``tests/fake_gpu`` first on ``sys.path`` (and on ``PYTHONPATH`` for subprocesses) before
    ``import tensorrt``; ``tests/fake_gpu_fixture.py``'s ``use_fake_gpu(monkeypatch, ...)`` does that and
    cleans up after the test.

Configuration (environment)
    ``OLVF_FAKE_TRT_VERSION``   ``__version__``; read at import (default "10.3.0").
    ``OLVF_FAKE_GPU_NAME`` / ``OLVF_FAKE_GPU_CC`` / ``OLVF_FAKE_GPU_COUNT`` / ``OLVF_FAKE_GPU_MEMORY``,
    ``OLVF_FAKE_CUDA_DRIVER`` / ``OLVF_FAKE_CUDA_INIT_ERROR``: the GPU, shared with the fake cuda-python.
    TensorRT cannot start CUDA where cuda-python cannot: ``trt.Builder`` / ``trt.Runtime`` then log
    TensorRT's error and raise ``TypeError: pybind11::init(): factory function returned nullptr``, as
    the real bindings do (recorded).
    ``OLVF_FAKE_TRT_CUDA_ERROR`` TensorRT's own CUDA start fails with this code although cuda-python
                                works (35: a driver older than TensorRT's CUDA needs); default 0.
    ``OLVF_FAKE_TRT_NOISE``     float added to every float output, read when ``execute_async_v3`` is
                                called (default 0): an engine that disagrees with its ONNX graph.
    ``OLVF_FAKE_TRT_LAYER_STYLE`` how engine information spells precisions, read at build.
                                TensorRT 10 (one "Format/Datatype" field): "cask" (default; "Channel
                                major FP16 format where channel % 8 == 0", "Row major linear FP32") or
                                "kgen" ("Half", "Float"): both spellings appear in NVIDIA's own reader,
                                trt-engine-explorer (trex/activations.py). TensorRT 11 (split "Format"
                                and "DataType" fields): "documented" (default; "Float" and "Row major
                                linear FP32 format (kLINEAR)" as in NVIDIA's 11.x migration guide, FP16
                                by analogy as "Half" / "... FP16 format ...") or "opaque" (spellings olvf
                                does not know: "Float16", "kHWC8"), to test the check that must not
                                depend on them.

What it models
    * logging: ``trt.Logger`` prints to stdout as "[MM/DD/YYYY-HH:MM:SS] [TRT] [W] message" (recorded);
      TensorRT keeps the first logger given to a Builder or Runtime for the whole process and says so
      (at INFO) when another one is passed later.
    * parsing: ONNX Runtime must accept the graph; otherwise ``parse_from_file`` is False with one error.
    * building: optimisation profiles are checked against the network's inputs; weak typing (TensorRT
      10, ``BuilderFlag.FP16``) marks float layers Half, keeps FP16 weights (the plan is about half the
      size of an FP32 one) and rounds inputs and outputs through float16 at run time; strongly typed
      networks take precisions from the graph; the progress monitor is called; the timing cache gains
      one entry per distinct build.
    * the plan: ``b"FAKETRT1"`` + JSON metadata + the ONNX bytes (float weights as float16 in an FP16
      build). It loads only with the same TensorRT version and compute capability (``None`` and an
      error otherwise); another GPU name with the same capability loads with a warning, as real
      TensorRT does.
    * running: an execution context holds device memory for the largest profile shapes; with too
      little free ``create_execution_context`` returns None (as the bindings do for a null context).
      ``execute_async_v3`` checks shapes and addresses, then enqueues the ONNX Runtime run on the fake
      CUDA stream; it reads inputs from and writes outputs to the fake device memory when the stream
      is synchronised.

``_log_records`` keeps every (severity, message) logged through any logger.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__version__ = os.environ.get("OLVF_FAKE_TRT_VERSION", "10.3.0")
_MAJOR = int(__version__.split(".")[0])
_OLVF_FAKE = True

_ENGINE_MAGIC = b"FAKETRT1"
_CACHE_MAGIC = b"FAKETRTC"

_log_records: list[tuple[Any, str]] = []


# --- the real API, as recorded -----------------------------------------------------------------------------------


def _numeric(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _surface() -> dict[str, Any]:
    """The recorded real API nearest to ``__version__``: same major, the newest at or below it (else the oldest)."""
    folder = Path(__file__).resolve().parent.parent / "surface"
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("tensorrt-*.json"))]
    same = sorted(
        (r for r in records if r["version"].split(".")[0] == str(_MAJOR)), key=lambda r: _numeric(r["version"])
    )
    if not same:
        raise ImportError(f"fake TensorRT: no recorded TensorRT {_MAJOR}.x API in {folder}")
    below = [r for r in same if _numeric(r["version"]) <= _numeric(__version__)]
    return (below or same)[-1]


_SURFACE = _surface()


# --- enums -----------------------------------------------------------------------------------------------------


class _TrtEnum(enum.IntEnum):
    """pybind11 enums: int(), ==, and str() giving "Type.MEMBER"."""

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self.name}: {int(self)}>"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _enum(name: str) -> Any:
    members = _SURFACE["enums"][name]
    short = name.rsplit(".", 1)[-1]
    return _TrtEnum(short, members, module=__name__, qualname=name)  # type: ignore[call-overload]


DataType = _enum("DataType")
TensorIOMode = _enum("TensorIOMode")
TensorLocation = _enum("TensorLocation")
ProfilingVerbosity = _enum("ProfilingVerbosity")
LayerInformationFormat = _enum("LayerInformationFormat")
MemoryPoolType = _enum("MemoryPoolType")
ErrorCode = _enum("ErrorCode")  # the ONNX parser's error codes
BuilderFlag = _enum("BuilderFlag")
NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag")

# NumPy-style aliases, where this TensorRT has them.
_ALIASES = {
    "float32": "FLOAT",
    "float16": "HALF",
    "bfloat16": "BF16",
    "int8": "INT8",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "bool": "BOOL",
    "fp8": "FP8",
    "int4": "INT4",
    "fp4": "FP4",
    "e8m0": "E8M0",
}
_PRESENT_ALIASES = {a: m for a, m in _ALIASES.items() if a in _SURFACE["module"] and m in DataType.__members__}


def __getattr__(name: str) -> Any:
    # Module attributes, not globals: ``trt.bool`` must not shadow the builtin bool inside this module.
    if name in _PRESENT_ALIASES:
        return DataType[_PRESENT_ALIASES[name]]
    raise AttributeError(f"module 'tensorrt' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PRESENT_ALIASES])


# Weak typing's precision flags: TensorRT 10 refuses them on a strongly typed network; 11 has none of them.
_WEAK_TYPING_FLAGS = ("FP16", "INT8", "FP8", "BF16", "INT4", "FP4")

_NUMPY_TYPES = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
}


def nptype(trt_type: Any) -> Any:
    """The numpy type of a TensorRT DataType, as ``tensorrt.nptype``."""
    if trt_type in _NUMPY_TYPES:
        return _NUMPY_TYPES[trt_type]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


def volume(iterable: Iterable[int]) -> int:
    result = 1
    for value in iterable:
        result *= int(value)
    return result


def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
    return True


# --- configuration ---------------------------------------------------------------------------------------------


def _gpu_count() -> int:
    return int(os.environ.get("OLVF_FAKE_GPU_COUNT", "1"))


def _gpu_name() -> str:
    return os.environ.get("OLVF_FAKE_GPU_NAME", "Fake GPU")


def _capability() -> str:
    return os.environ.get("OLVF_FAKE_GPU_CC", "8.9")


def _noise() -> float:
    return float(os.environ.get("OLVF_FAKE_TRT_NOISE", "0") or 0)


def _cuda_start_error() -> int:
    """The CUDA error TensorRT meets when it starts CUDA (0: none), as cuda-python would meet it, or its own."""
    if os.environ.get("OLVF_FAKE_CUDA_DRIVER", "ok") == "missing":
        return 35  # cudaErrorInsufficientDriver: no libcuda at all
    for variable in ("OLVF_FAKE_CUDA_INIT_ERROR", "OLVF_FAKE_TRT_CUDA_ERROR"):
        code = int(os.environ.get(variable, "0") or 0)
        if code:
            return code
    return 100 if _gpu_count() <= 0 else 0  # cudaErrorNoDevice


_LAYER_STYLES = {10: ("cask", "kgen"), 11: ("documented", "opaque")}


def _layer_style() -> str:
    styles = _LAYER_STYLES[min(_MAJOR, 11)]
    style = os.environ.get("OLVF_FAKE_TRT_LAYER_STYLE") or styles[0]
    if style not in styles:
        raise ValueError(f"OLVF_FAKE_TRT_LAYER_STYLE for TensorRT {_MAJOR} must be one of {styles}, not {style!r}")
    return style


def _cudart() -> Any:
    """The fake cuda.bindings.runtime, if that is the one in use (else None: run work immediately)."""
    module = sys.modules.get("cuda.bindings.runtime")
    if module is None:
        try:
            from cuda.bindings import runtime as module  # type: ignore[no-redef]
        except ImportError:
            return None
    return module if getattr(module, "_OLVF_FAKE", False) else None


# --- foundational types ----------------------------------------------------------------------------------------


class Dims:
    """A shape: indexable (negative indices too), len(), equal to a tuple or list; ``tuple(dims)`` converts."""

    MAX_DIMS = 8

    def __init__(self, shape: Iterable[int] = ()) -> None:
        self._dims = tuple(int(d) for d in shape)

    def __len__(self) -> int:
        return len(self._dims)

    def __getitem__(self, index: int) -> int:
        if not isinstance(index, int):
            raise TypeError("Dims indices must be integers")
        return self._dims[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Dims):
            return other._dims == self._dims
        if isinstance(other, (tuple, list)):
            return tuple(other) == self._dims
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._dims)

    __str__ = __repr__


def _dims_tuple(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int):
        raise TypeError("incompatible function arguments: a shape must be a sequence of ints or a Dims")
    return tuple(int(d) for d in shape)


class IHostMemory(bytes):
    """Library-owned bytes: the buffer protocol (``bytes(x)``, ``f.write(x)``), ``nbytes`` and ``dtype``; nothing else.

    A bytes subclass only because a pure-Python class cannot offer the buffer protocol before Python 3.12;
    the str-like methods of bytes, which the real IHostMemory lacks, raise AttributeError.
    """

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and name not in ("nbytes", "dtype") and hasattr(bytes, name):
            raise AttributeError(f"'tensorrt.tensorrt.IHostMemory' object has no attribute '{name}'")
        return super().__getattribute__(name)

    @property
    def nbytes(self) -> int:
        return bytes.__len__(self)

    @property
    def dtype(self) -> Any:
        return DataType.UINT8

    def __len__(self) -> int:
        raise TypeError("object of type 'IHostMemory' has no len()")

    def __getitem__(self, index: Any) -> Any:
        raise TypeError("'IHostMemory' object is not subscriptable")

    def __iter__(self) -> Any:
        raise TypeError("'IHostMemory' object is not iterable")

    def __contains__(self, item: object) -> bool:
        raise TypeError("argument of type 'IHostMemory' is not iterable")

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    __hash__ = object.__hash__

    def __add__(self, other: Any) -> Any:
        raise TypeError("unsupported operand type(s) for +: 'IHostMemory'")

    def __repr__(self) -> str:
        return f"<tensorrt.tensorrt.IHostMemory object, {self.nbytes} bytes>"


def _to_bytes(data: Any) -> bytes:
    if isinstance(data, str):
        raise TypeError("incompatible function arguments: expected a buffer, not str")
    return bytes(memoryview(data))


# --- pybind11 trampolines ----------------------------------------------------------------------------------------


class _Trampoline(type):
    """pybind11 refuses, when the object is made, a subclass whose __init__ did not call the base's."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        instance = super().__call__(*args, **kwargs)
        if not instance.__dict__.get("_olvf_trt_base_initialised"):
            base = next(b for b in cls.__mro__ if b.__dict__.get("_olvf_trampoline_base"))
            raise TypeError(f"tensorrt.tensorrt.{base.__name__}.__init__() must be called when overriding __init__")
        return instance


# --- logging ---------------------------------------------------------------------------------------------------


class ILogger(metaclass=_Trampoline):
    _olvf_trampoline_base = True
    Severity = _enum("ILogger.Severity")
    INTERNAL_ERROR = Severity.INTERNAL_ERROR
    ERROR = Severity.ERROR
    WARNING = Severity.WARNING
    INFO = Severity.INFO
    VERBOSE = Severity.VERBOSE

    def __init__(self) -> None:
        self.__dict__["_olvf_trt_base_initialised"] = True

    def log(self, severity: Any, msg: str) -> None:
        raise RuntimeError('Tried to call pure virtual function "ILogger::log"')


class Logger(ILogger):
    """Prints messages at or above ``min_severity`` to stdout, as "[MM/DD/YYYY-HH:MM:SS] [TRT] [W] message"."""

    def __init__(self, min_severity: Any = ILogger.Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity: Any, msg: str) -> None:
        if int(severity) <= int(self.min_severity):
            letter = {0: "F", 1: "E", 2: "W", 3: "I", 4: "V"}[int(severity)]
            stamp = time.strftime("%m/%d/%Y-%H:%M:%S")
            print(f"[{stamp}] [TRT] [{letter}] {msg}", file=sys.stdout, flush=True)


_global_logger: list[Any] = []  # the first logger any Builder or Runtime got: TensorRT keeps it for the process


def _log(logger: Any, severity: Any, message: str) -> None:
    _log_records.append((severity, message))
    target = _global_logger[0] if _global_logger else logger
    if target is not None:
        target.log(severity, message)


def _start(logger: Any, what: str) -> None:
    """What createInferBuilder / createInferRuntime do first: keep the process's logger, start CUDA."""
    if not isinstance(logger, ILogger):
        raise TypeError(f"__init__(): incompatible constructor arguments for {what}: logger must be an ILogger")
    if not _global_logger:
        _global_logger.append(logger)
    elif logger is not _global_logger[0]:
        _log(
            logger,
            ILogger.Severity.INFO,
            f"The logger passed into {what} differs from one already provided for an existing builder, runtime, "
            "or refitter. Uses of the global logger, returned by nvinfer1::getLogger(), will return the "
            "existing value.",
        )
    code = _cuda_start_error()
    if code:
        _log(
            logger,
            ILogger.Severity.ERROR,
            f"{what}: Error Code 6: API Usage Error (CUDA initialization failure with error: {code}. "
            "Please check your CUDA installation: http://docs.nvidia.com/cuda/cuda-installation-guide-linux/index.html)",
        )
        raise TypeError("pybind11::init(): factory function returned nullptr")


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
    for mode, args in (("input", session.get_inputs()), ("output", session.get_outputs())):
        for arg in args:
            if arg.type not in _ORT_TYPES:
                raise ValueError(f"{mode} {arg.name} has type {arg.type}, which TensorRT does not support")
            io.append(
                {"name": arg.name, "mode": mode, "dtype": _ORT_TYPES[arg.type].name, "shape": _symbolic(arg.shape)}
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
                tensor["name"], _engine_dims(tensor["shape"]), DataType[tensor["dtype"]], tensor["mode"] == "input"
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
            return self._fail(ErrorCode.INVALID_VALUE, f"Failed to open file: {model} ({error})", "parseFromFile")
        return self._parse(onnx_bytes, model, "parseFromFile")

    def parse(self, model: Any, path: str | None = None) -> bool:
        return self._parse(_to_bytes(model), path or "<buffer>", "parse")

    def _parse(self, onnx_bytes: bytes, where: str, func: str) -> bool:
        if self.network._graph is not None:
            return self._fail(ErrorCode.INVALID_GRAPH, "the network already holds a parsed model", func)
        try:
            graph = _analyse(onnx_bytes)
        except Exception as error:  # noqa: BLE001 - whatever ONNX Runtime refuses, TensorRT refuses too
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return self._fail(
                ErrorCode.MODEL_DESERIALIZE_FAILED, f"Failed to parse ONNX model {where}: {first_line}", func
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


# --- builder ---------------------------------------------------------------------------------------------------


class IProgressMonitor(metaclass=_Trampoline):
    """Subclass and call ``IProgressMonitor.__init__(self)``, as with pybind11 trampolines."""

    _olvf_trampoline_base = True

    def __init__(self) -> None:
        self.__dict__["_olvf_trt_base_initialised"] = True

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::phase_start"')

    def step_complete(self, phase_name: str, step: int) -> bool:
        raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::step_complete"')

    def phase_finish(self, phase_name: str) -> None:
        raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::phase_finish"')


class IOptimizationProfile:
    """Made by ``Builder.create_optimization_profile``. ``bool(profile)`` is TensorRT's partial ``isValid()``."""

    def __init__(self) -> None:
        self._shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}
        self.extra_memory_target = 1.0

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - TensorRT's names
        # TensorRT's setDimensions for kMIN, kOPT, kMAX in turn; the bindings raise RuntimeError on the first
        # refusal (NVIDIA's pyCore.cpp, PY_ASSERT_RUNTIME_ERROR; the messages are in tensorrt.so).
        low, best, high = _dims_tuple(min), _dims_tuple(opt), _dims_tuple(max)
        if any(d < 0 for d in low):
            raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
        if len(best) != len(low) or any(b < a for a, b in zip(low, best)):
            raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
        if len(high) != len(best) or any(c < b for b, c in zip(best, high)):
            raise RuntimeError("Shape provided for max is inconsistent with other shapes.")
        self._shapes[str(input)] = (low, best, high)

    def get_shape(self, input: str) -> list[Dims]:  # noqa: A002
        shapes = self._shapes.get(input)
        return [Dims(s) for s in shapes] if shapes else []

    def __bool__(self) -> bool:
        # isValid(): every tensor set has min <= opt <= max of one rank; set_shape refuses anything else.
        return all(len(a) == len(b) == len(c) for a, b, c in self._shapes.values())


class ITimingCache:
    def __init__(self, entries: Iterable[str] = (), device: dict[str, str] | None = None) -> None:
        self._entries = list(entries)
        self._device = device or _device_identity()

    def serialize(self) -> IHostMemory:
        body = json.dumps({"device": self._device, "entries": self._entries}, sort_keys=True).encode()
        return IHostMemory(_CACHE_MAGIC + body)

    def combine(self, input_cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if input_cache._device != self._device and not ignore_mismatch:
            return False
        self._entries.extend(e for e in input_cache._entries if e not in self._entries)
        return True

    def reset(self) -> bool:
        self._entries.clear()
        return True


def _device_identity() -> dict[str, str]:
    return {"tensorrt_version": __version__, "gpu_name": _gpu_name(), "compute_capability": _capability()}


class IBuilderConfig:
    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self._flags = 0
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self._progress_monitor: IProgressMonitor | None = None
        self._timing_cache: ITimingCache | None = None
        self._profiles: list[IOptimizationProfile] = []
        self._pools: dict[int, int] = {}
        self.builder_optimization_level = 3
        self.max_aux_streams = -1

    @property
    def flags(self) -> int:
        return self._flags

    @flags.setter
    def flags(self, value: int) -> None:
        self._flags = int(value)

    @staticmethod
    def _flag(flag: Any, method: str) -> int:
        if not isinstance(flag, BuilderFlag):
            raise TypeError(
                f"{method}(): incompatible function arguments. The following argument types are supported:\n"
                f"    1. (self: tensorrt.tensorrt.IBuilderConfig, flag: tensorrt.tensorrt.BuilderFlag) -> ..."
            )
        return 1 << int(flag)

    def set_flag(self, flag: Any) -> None:
        self._flags |= self._flag(flag, "set_flag")

    def clear_flag(self, flag: Any) -> None:
        self._flags &= ~self._flag(flag, "clear_flag")

    def get_flag(self, flag: Any) -> bool:
        return bool(self._flags & self._flag(flag, "get_flag"))

    def _has(self, name: str) -> bool:
        return name in BuilderFlag.__members__ and bool(self._flags & (1 << int(BuilderFlag[name])))

    @property
    def progress_monitor(self) -> IProgressMonitor | None:
        return self._progress_monitor

    @progress_monitor.setter
    def progress_monitor(self, monitor: IProgressMonitor | None) -> None:
        if monitor is not None:
            if not isinstance(monitor, IProgressMonitor):
                raise TypeError("progress_monitor must be an IProgressMonitor")
            if not monitor.__dict__.get("_olvf_trt_base_initialised"):
                raise TypeError(f"{type(monitor).__name__}.__init__() must be called when overriding __init__")
        self._progress_monitor = monitor

    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        self._pools[int(pool)] = int(pool_size)

    def get_memory_pool_limit(self, pool: Any) -> int:
        return self._pools.get(int(pool), 8 * 1024**3)

    def create_timing_cache(self, serialized_timing_cache: Any) -> ITimingCache:
        data = _to_bytes(serialized_timing_cache)
        if not data:
            return ITimingCache()
        try:
            if not data.startswith(_CACHE_MAGIC):
                raise ValueError("not a timing cache")
            body = json.loads(data[len(_CACHE_MAGIC) :])
            cache = ITimingCache(body["entries"], body["device"])
        except (ValueError, KeyError, TypeError):
            _log(self._logger, ILogger.Severity.WARNING, "Timing cache is corrupted or invalid; an empty one is used")
            return ITimingCache()
        if cache._device["tensorrt_version"] != __version__:
            _log(
                self._logger,
                ILogger.Severity.WARNING,
                f"The timing cache was created by TensorRT {cache._device['tensorrt_version']}, "
                f"this is {__version__}; an empty one is used",
            )
            return ITimingCache()
        return cache

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if not isinstance(cache, ITimingCache):
            raise TypeError("set_timing_cache(): incompatible function arguments")
        if cache._device != _device_identity() and not ignore_mismatch:
            _log(
                self._logger,
                ILogger.Severity.ERROR,
                "Error Code 3: API Usage Error (Parameter check failed, condition: ignoreMismatch || "
                "timing cache device matches. The timing cache was created on a different device.)",
            )
            return False
        self._timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._timing_cache

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not isinstance(profile, IOptimizationProfile):
            raise TypeError("add_optimization_profile(): incompatible function arguments")
        self._profiles.append(profile)
        return len(self._profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._profiles)


class Builder:
    def __init__(self, logger: Any) -> None:
        _start(logger, "createInferBuilder")
        self.logger = logger
        self.max_threads = os.cpu_count() or 1

    if _MAJOR < 11:  # removed in TensorRT 11

        @property
        def platform_has_fast_fp16(self) -> bool:
            return tuple(int(p) for p in _capability().split(".")) >= (5, 3)

        @property
        def platform_has_tf32(self) -> bool:
            return tuple(int(p) for p in _capability().split(".")) >= (8, 0)

        @property
        def platform_has_fast_int8(self) -> bool:
            return tuple(int(p) for p in _capability().split(".")) >= (6, 1)

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self.logger)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def is_network_supported(self, network: INetworkDefinition, config: IBuilderConfig) -> bool:
        return network._graph is not None

    def _error(self, message: str) -> None:
        _log(self.logger, ILogger.Severity.ERROR, message)

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
        if not isinstance(network, INetworkDefinition) or not isinstance(config, IBuilderConfig):
            raise TypeError("build_serialized_network(): incompatible function arguments")
        if network._graph is None or not network._outputs:
            self._error("Error Code 4: API Usage Error (Network must have at least one output)")
            return None
        if network._strongly_typed:
            weak = [f for f in _WEAK_TYPING_FLAGS if config._has(f)]
            if weak:
                self._error(
                    f"Error Code 4: API Usage Error (BuilderFlag::k{weak[0]} is not allowed for a strongly typed "
                    "network: precision comes from the network's types)"
                )
                return None
        profiles = self._profiles(network, config)
        if profiles is None:
            return None
        if not self._report_progress(network, config):
            self._error("Error Code 2: Internal Error (Build cancelled by the progress monitor)")
            return None

        fp16_flag = config._has("FP16")
        layers = _engine_layers(network, fp16_flag)
        half_layers = sum(1 for layer in layers if any(t["dtype"] == "HALF" for t in layer["outputs"]))
        identity = _device_identity()
        metadata = {
            "fake": "olvf fake TensorRT engine: ONNX Runtime on CPU, not TensorRT",
            **identity,
            "strongly_typed": network._strongly_typed,
            "fp16_flag": fp16_flag,
            "half_layers": half_layers,
            "profiling_verbosity": int(config.profiling_verbosity),
            "layer_style": _layer_style(),
            "noise_at_build": _noise(),
            "io": network._graph["io"],
            "profiles": profiles,
            "layers": layers,
        }
        assert network._onnx is not None
        # Layers that run in FP16 keep FP16 weights: a weakly typed FP16 build stores them at half the bytes.
        weights_half = fp16_flag and not network._strongly_typed
        stored = _halve_weights(network._onnx) if weights_half else network._onnx
        metadata["weights_half"] = weights_half and stored is not network._onnx
        metadata["onnx_sha256"] = hashlib.sha256(stored).hexdigest()
        if config._timing_cache is not None and not config._has("DISABLE_TIMING_CACHE"):
            key = hashlib.sha256(json.dumps([network._graph["sha256"], fp16_flag, profiles]).encode()).hexdigest()
            if key not in config._timing_cache._entries:
                config._timing_cache._entries.append(key)
        body = json.dumps(metadata, sort_keys=True).encode()
        return IHostMemory(_ENGINE_MAGIC + struct.pack("<Q", len(body)) + body + stored)

    def _profiles(self, network: INetworkDefinition, config: IBuilderConfig) -> list[dict[str, list[list[int]]]] | None:
        inputs = {t.name: tuple(t.shape) for t in network._inputs}
        dynamic = [name for name, shape in inputs.items() if -1 in shape]
        if dynamic and not config._profiles:
            self._error(
                "Error Code 4: API Usage Error (Network has dynamic or shape inputs, "
                "but no optimization profile has been defined.)"
            )
            return None
        chosen = config._profiles or [IOptimizationProfile()]
        result = []
        for index, profile in enumerate(chosen):
            unknown = [name for name in profile._shapes if name not in inputs]
            if unknown:
                self._error(
                    f"Error Code 4: API Usage Error (Optimization profile {index} sets the shape of '{unknown[0]}', "
                    "which is not an input of the network.)"
                )
                return None
            shapes: dict[str, list[list[int]]] = {}
            for name, declared in inputs.items():
                if name not in profile._shapes:
                    if name in dynamic:
                        self._error(
                            f"Error Code 4: API Usage Error (Optimization profile {index} is missing values "
                            f"for the dynamic input '{name}' {list(declared)}.)"
                        )
                        return None
                    shapes[name] = [list(declared)] * 3
                    continue
                triple = profile._shapes[name]
                for dims in triple:
                    if len(dims) != len(declared) or any(d != s for d, s in zip(dims, declared) if s != -1):
                        self._error(
                            f"Error Code 4: API Usage Error (Optimization profile {index}: shape {list(dims)} "
                            f"of '{name}' does not match the network's {list(declared)}.)"
                        )
                        return None
                shapes[name] = [list(d) for d in triple]
            result.append(shapes)
        return result

    def _report_progress(self, network: INetworkDefinition, config: IBuilderConfig) -> bool:
        monitor = config.progress_monitor
        if monitor is None:
            return True
        top = "Building engine"
        steps = [
            ("Graph construction", max(1, network.num_layers)),
            ("Graph optimization", 3),
            ("Tactic selection", max(1, network.num_layers)),
            ("Engine serialization", 1),
        ]
        monitor.phase_start(top, None, len(steps))
        for index, (phase, count) in enumerate(steps):
            monitor.phase_start(phase, top, count)
            for step in range(count):
                if monitor.step_complete(phase, step) is False:
                    monitor.phase_finish(phase)
                    monitor.phase_finish(top)
                    return False
            monitor.phase_finish(phase)
            if monitor.step_complete(top, index) is False:
                monitor.phase_finish(top)
                return False
        monitor.phase_finish(top)
        return True


def _halve_weights(onnx_bytes: bytes) -> bytes:
    """The graph with its float32 initializers stored as float16 (unchanged without the ``onnx`` package)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return onnx_bytes
    model = onnx.load_model_from_string(onnx_bytes)
    for index, init in enumerate(model.graph.initializer):
        if init.data_type == onnx.TensorProto.FLOAT:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name)
            model.graph.initializer[index].CopyFrom(half)
    return model.SerializeToString()


def _restore_weights(onnx_bytes: bytes) -> bytes:
    """Float16 initializers back to float32, the type the graph's nodes expect (the rounding stays)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(onnx_bytes)
    for index, init in enumerate(model.graph.initializer):
        if init.data_type == onnx.TensorProto.FLOAT16:
            full = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name)
            model.graph.initializer[index].CopyFrom(full)
    return model.SerializeToString()


def _engine_layers(network: INetworkDefinition, fp16_flag: bool) -> list[dict[str, Any]]:
    """Layers as the fake engine reports them: one per ONNX node, with reformats around FP16 regions."""
    assert network._graph is not None
    io = network._graph["io"]
    io_names = {t["name"] for t in io}
    weak_half = fp16_flag and not network._strongly_typed
    nodes = network._graph["nodes"]
    if nodes is None:  # no onnx package: one opaque layer
        half = weak_half or any(t["dtype"] == "HALF" for t in io)
        nodes = [
            {
                "name": "fused_onnx_graph",
                "op": "Conv",
                "inputs": [
                    {"name": t["name"], "dims": _engine_dims(t["shape"]), "dtype": t["dtype"]}
                    for t in io
                    if t["mode"] == "input"
                ],
                "outputs": [
                    {"name": t["name"], "dims": _engine_dims(t["shape"]), "dtype": "HALF" if half else t["dtype"]}
                    for t in io
                    if t["mode"] == "output"
                ],
            }
        ]
    layers: list[dict[str, Any]] = []
    for node in nodes:
        inputs = [dict(t) for t in node["inputs"]]
        outputs = [dict(t) for t in node["outputs"]]
        if weak_half:
            for k, tensor in enumerate(inputs):
                if tensor["dtype"] == "FLOAT" and tensor["name"] in io_names:
                    reformatted = f"Reformatted Input Tensor {k} to {node['name']}"
                    layers.append(
                        _layer(
                            f"Reformatting CopyNode for Input Tensor {k} to {node['name']}",
                            "Reformat",
                            node["name"],
                            [tensor],
                            [{**tensor, "name": reformatted, "dtype": "HALF"}],
                        )
                    )
                    inputs[k] = {**tensor, "name": reformatted, "dtype": "HALF"}
                elif tensor["dtype"] == "FLOAT":
                    tensor["dtype"] = "HALF"
            tail = []
            for k, tensor in enumerate(outputs):
                if tensor["dtype"] != "FLOAT":
                    continue
                if tensor["name"] in io_names:
                    reformatted = f"Reformatted Output Tensor {k} to {node['name']}"
                    tail.append(
                        _layer(
                            f"Reformatting CopyNode for Output Tensor {k} to {node['name']}",
                            "Reformat",
                            node["name"],
                            [{**tensor, "name": reformatted, "dtype": "HALF"}],
                            [tensor],
                        )
                    )
                    outputs[k] = {**tensor, "name": reformatted, "dtype": "HALF"}
                else:
                    tensor["dtype"] = "HALF"
            layers.append(_layer(node["name"], node["op"], node["name"], inputs, outputs))
            layers.extend(tail)
        else:
            layers.append(_layer(node["name"], node["op"], node["name"], inputs, outputs))
    return layers


def _layer(
    name: str, op: str, onnx_name: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"name": name, "op": op, "onnx": onnx_name, "inputs": inputs, "outputs": outputs}


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
    entry: dict[str, Any] = {"Name": tensor["name"], "Location": "Device", "Dimensions": tensor["dims"]}
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


# --- runtime and engine ----------------------------------------------------------------------------------------


class Runtime:
    def __init__(self, logger: Any) -> None:
        _start(logger, "createInferRuntime")
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
        data = _to_bytes(serialized_engine)
        error = ILogger.Severity.ERROR
        if not data.startswith(_ENGINE_MAGIC) or len(data) < len(_ENGINE_MAGIC) + 8:
            _log(
                self.logger,
                error,
                "Error Code 1: Serialization (Serialization assertion magicTagRead == kMAGIC_TAG failed."
                "Magic tag does not match)",
            )
            return None
        (length,) = struct.unpack("<Q", data[len(_ENGINE_MAGIC) : len(_ENGINE_MAGIC) + 8])
        start = len(_ENGINE_MAGIC) + 8
        try:
            meta = json.loads(data[start : start + length])
        except ValueError:
            _log(self.logger, error, "Error Code 1: Serialization (Serialization assertion failed: corrupt plan)")
            return None
        onnx_bytes = data[start + length :]
        if hashlib.sha256(onnx_bytes).hexdigest() != meta.get("onnx_sha256"):
            _log(self.logger, error, "Error Code 1: Serialization (Serialization assertion failed: truncated plan)")
            return None
        if meta.get("weights_half"):
            onnx_bytes = _restore_weights(onnx_bytes)
        if meta["tensorrt_version"] != __version__:
            _log(
                self.logger,
                error,
                "Error Code 6: API Usage Error (The engine plan file is not compatible with this version of "
                f"TensorRT, expecting library version {__version__} got {meta['tensorrt_version']}, please rebuild.)",
            )
            return None
        if meta["compute_capability"] != _capability():
            _log(
                self.logger,
                error,
                "Error Code 6: API Usage Error (The engine plan file is generated on an incompatible device, "
                f"expecting compute {_capability()} got compute {meta['compute_capability']}, please rebuild.)",
            )
            return None
        if meta["gpu_name"] != _gpu_name():
            _log(
                self.logger,
                ILogger.Severity.WARNING,
                "Using an engine plan file across different models of devices is not recommended and is likely "
                "to affect performance or even cause errors.",
            )
        return ICudaEngine(meta, onnx_bytes, data, self.logger)


class ICudaEngine:
    def __init__(self, meta: dict[str, Any], onnx_bytes: bytes, plan: bytes, logger: Any) -> None:
        self._meta = meta
        self._onnx = onnx_bytes
        self._plan = plan
        self._logger = logger
        # TensorRT orders I/O tensors inputs first.
        self._io = [t for t in meta["io"] if t["mode"] == "input"] + [t for t in meta["io"] if t["mode"] == "output"]
        self._by_name = {t["name"]: t for t in self._io}
        self.name = "Unnamed Network 0"
        self._output_shape_cache: dict[tuple[Any, ...], dict[str, tuple[int, ...]]] = {}
        self._executions = 0  # inferences run (not only enqueued) with this engine
        self._digest = hashlib.sha256(onnx_bytes).hexdigest()

    @property
    def device_memory_size_v2(self) -> int:
        """Activation memory an execution context holds: modelled as four times the I/O at the largest profile."""
        largest = {name: tuple(shapes[2]) for name, shapes in self._meta["profiles"][0].items()}
        outputs = self._output_shapes(largest)
        total = 0
        for tensor in self._io:
            shape = largest[tensor["name"]] if tensor["mode"] == "input" else outputs[tensor["name"]]
            total += volume(shape) * np.dtype(nptype(DataType[tensor["dtype"]])).itemsize
        return 4 * total

    if _MAJOR < 11:  # removed in TensorRT 11

        @property
        def device_memory_size(self) -> int:
            return self.device_memory_size_v2

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    @property
    def num_layers(self) -> int:
        return len(self._meta["layers"])

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._meta["profiles"])

    if _MAJOR < 11:  # removed in TensorRT 11

        @property
        def has_implicit_batch_dimension(self) -> bool:
            return False

    def get_tensor_name(self, index: int) -> str | None:
        if not 0 <= index < len(self._io):
            _log(self._logger, ILogger.Severity.ERROR, f"Error Code 3: API Usage Error (index {index} out of range)")
            return None
        return self._io[index]["name"]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        tensor = self._by_name.get(name)
        if tensor is None:
            return TensorIOMode.NONE
        return TensorIOMode.INPUT if tensor["mode"] == "input" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        tensor = self._by_name.get(name)
        if tensor is None:
            _log(self._logger, ILogger.Severity.ERROR, f"Error Code 3: API Usage Error (no tensor named {name})")
            return DataType.FLOAT
        return DataType[tensor["dtype"]]

    def get_tensor_shape(self, name: str) -> Dims:
        tensor = self._by_name.get(name)
        if tensor is None:
            _log(self._logger, ILogger.Severity.ERROR, f"Error Code 3: API Usage Error (no tensor named {name})")
            return Dims()
        return Dims(_engine_dims(tensor["shape"]))

    def get_tensor_location(self, name: str) -> TensorLocation:
        return TensorLocation.DEVICE

    def is_shape_inference_io(self, name: str) -> bool:
        return False

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        tensor = self._by_name.get(name)
        profiles = self._meta["profiles"]
        if tensor is None or tensor["mode"] != "input" or not 0 <= profile_index < len(profiles):
            _log(
                self._logger,
                ILogger.Severity.ERROR,
                f"Error Code 3: API Usage Error (get_tensor_profile_shape: {name!r} is not an input of profile "
                f"{profile_index})",
            )
            return []
        return [Dims(s) for s in profiles[profile_index][name]]

    def create_execution_context(self, strategy: Any = None) -> IExecutionContext | None:
        """A context with its device memory, or None (TensorRT's null) when the GPU has not enough free."""
        context = IExecutionContext(self)
        cudart = _cudart()
        if cudart is not None:
            nbytes = self.device_memory_size_v2
            if not cudart._reserve(id(context), nbytes):
                _log(
                    self._logger,
                    ILogger.Severity.ERROR,
                    f"1: [defaultAllocator.cpp::allocate::31] Error Code 1: Cuda Runtime (out of memory): "
                    f"IExecutionContext creation needs {nbytes} bytes of device memory",
                )
                return None
            context._memory_owner = cudart
        return context

    def create_engine_inspector(self) -> EngineInspector:
        return EngineInspector(self)

    def serialize(self) -> IHostMemory:
        return IHostMemory(self._plan)

    def _session(self) -> Any:
        return _session(self._onnx, self._digest)

    def _output_shapes(self, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Output shapes for concrete input shapes: from declared dimension names, else one run on zeros."""
        key = tuple(sorted(input_shapes.items()))
        if key in self._output_shape_cache:
            return self._output_shape_cache[key]
        names: dict[str, int] = {}
        for tensor in self._io:
            if tensor["mode"] == "input":
                for declared, actual in zip(tensor["shape"], input_shapes[tensor["name"]]):
                    if isinstance(declared, str):
                        names.setdefault(declared, actual)
        shapes: dict[str, tuple[int, ...]] = {}
        known = True
        for tensor in self._io:
            if tensor["mode"] != "output":
                continue
            dims = []
            for declared in tensor["shape"]:
                if isinstance(declared, int):
                    dims.append(declared)
                elif isinstance(declared, str) and declared in names:
                    dims.append(names[declared])
                else:
                    known = False
            shapes[tensor["name"]] = tuple(dims)
        if not known:
            feeds = {
                t["name"]: np.zeros(input_shapes[t["name"]], nptype(DataType[t["dtype"]]))
                for t in self._io
                if t["mode"] == "input"
            }
            session = self._session()
            results = session.run(None, feeds)
            shapes = {o.name: tuple(r.shape) for o, r in zip(session.get_outputs(), results)}
        self._output_shape_cache[key] = shapes
        return shapes


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.name = ""
        self.debug_sync = False
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self._inputs = [t for t in engine._io if t["mode"] == "input"]
        self._outputs = [t for t in engine._io if t["mode"] == "output"]
        for tensor in self._inputs:  # static inputs need no set_input_shape
            if all(isinstance(d, int) for d in tensor["shape"]):
                self._shapes[tensor["name"]] = tuple(tensor["shape"])
        self._memory_owner: Any = None

    def __del__(self) -> None:
        if self._memory_owner is not None:
            self._memory_owner._unreserve(id(self))

    def _error(self, message: str) -> None:
        _log(self.engine._logger, ILogger.Severity.ERROR, message)

    @property
    def active_optimization_profile(self) -> int:
        return 0

    def set_optimization_profile_async(self, profile_index: int, stream_handle: Any) -> bool:
        if profile_index != 0:
            self._error("fake TensorRT: only optimization profile 0 is supported")
            return False
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        tensor = self.engine._by_name.get(name)
        dims = _dims_tuple(shape)
        if tensor is None or tensor["mode"] != "input":
            self._error(f"Error Code 3: API Usage Error (Parameter check failed, condition: {name!r} is an input)")
            return False
        low, _, high = self.engine._meta["profiles"][0][name]
        declared = _engine_dims(tensor["shape"])
        if len(dims) != len(declared) or any(d != s for d, s in zip(dims, declared) if s != -1):
            self._error(
                f"Error Code 3: API Usage Error (Parameter check failed, condition: shape {list(dims)} of {name} "
                f"matches the engine's {declared})"
            )
            return False
        if not all(lo <= d <= hi for lo, d, hi in zip(low, dims, high)):
            self._error(
                f"Error Code 3: API Usage Error (Parameter check failed, condition: {name} shape {list(dims)} is "
                f"within the optimization profile's bounds, min {low} max {high})"
            )
            return False
        self._shapes[name] = dims
        return True

    @property
    def all_binding_shapes_specified(self) -> bool:
        return all(t["name"] in self._shapes for t in self._inputs)

    if _MAJOR < 11:  # removed in TensorRT 11

        @property
        def all_shape_inputs_specified(self) -> bool:
            return True

    def infer_shapes(self) -> list[str]:
        return [t["name"] for t in self._inputs if t["name"] not in self._shapes]

    def get_tensor_shape(self, name: str) -> Dims:
        tensor = self.engine._by_name.get(name)
        if tensor is None:
            self._error(f"Error Code 3: API Usage Error (no tensor named {name})")
            return Dims()
        if tensor["mode"] == "input":
            return Dims(self._shapes.get(name, _engine_dims(tensor["shape"])))
        if not self.all_binding_shapes_specified:
            return Dims(_engine_dims(tensor["shape"]))
        return Dims(self.engine._output_shapes(dict(self._shapes))[name])

    def set_tensor_address(self, name: str, memory: Any) -> bool:
        if name not in self.engine._by_name:
            self._error(f"Error Code 3: API Usage Error (Parameter check failed, condition: {name!r} is an I/O tensor)")
            return False
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: Any) -> bool:
        handle = int(stream_handle)
        missing = self.infer_shapes()
        if missing:
            self._error(
                "Error Code 3: API Usage Error (Parameter check failed, condition: All input dimensions specified. "
                f"Input shape not set for {missing[0]}; call set_input_shape first.)"
            )
            return False
        for tensor in self.engine._io:
            if not self._addresses.get(tensor["name"]):
                self._error(
                    f"Error Code 3: API Usage Error (Parameter check failed. Address is not set for "
                    f"{tensor['mode']} tensor {tensor['name']}. Call set_tensor_address before enqueue/execute.)"
                )
                return False
        input_shapes = dict(self._shapes)
        output_shapes = self.engine._output_shapes(input_shapes)
        plan = []
        cudart = _cudart()
        for tensor in self.engine._io:
            name = tensor["name"]
            shape = input_shapes[name] if tensor["mode"] == "input" else output_shapes[name]
            dtype = np.dtype(nptype(DataType[tensor["dtype"]]))
            nbytes = volume(shape) * dtype.itemsize
            address = self._addresses[name]
            if cudart is not None and nbytes and cudart._find(address, nbytes) is None:
                self._error(
                    f"fake TensorRT: {tensor['mode']} {name} needs {nbytes} bytes at {address:#x}, which is not "
                    "inside one allocation of the fake cudaMalloc / cudaMallocHost (a GPU would fault)"
                )
                return False
            plan.append((tensor, shape, dtype, nbytes, address))
        run = _Run(self.engine, plan, _noise())
        if cudart is None:
            run()
            return True
        error = cudart._enqueue(handle, run)
        if int(error) != 0:
            self._error(f"fake TensorRT: cannot enqueue on stream {handle:#x}: {error}")
            return False
        return True


class _Run:
    """One enqueued inference: reads the inputs' device memory, runs ONNX Runtime, writes the outputs."""

    def __init__(self, engine: ICudaEngine, plan: list[Any], noise: float) -> None:
        self.engine = engine
        self.plan = plan
        self.noise = noise
        meta = engine._meta
        self.round_half = meta["fp16_flag"] and not meta["strongly_typed"]

    def __call__(self) -> None:
        import ctypes

        feeds = {}
        for tensor, shape, dtype, nbytes, address in self.plan:
            if tensor["mode"] != "input":
                continue
            array = np.frombuffer(ctypes.string_at(address, nbytes), dtype=dtype).reshape(shape)
            if self.round_half and dtype == np.float32:
                array = array.astype(np.float16).astype(np.float32)
            feeds[tensor["name"]] = array
        session = self.engine._session()
        results = dict(zip((o.name for o in session.get_outputs()), session.run(None, feeds)))
        for tensor, shape, dtype, nbytes, address in self.plan:
            if tensor["mode"] != "output":
                continue
            result = np.asarray(results[tensor["name"]])
            if tuple(result.shape) != tuple(shape):
                raise RuntimeError(
                    f"fake TensorRT: output {tensor['name']} came out {result.shape}, predicted {shape} "
                    "(data-dependent output shapes are not modelled)"
                )
            if np.issubdtype(result.dtype, np.floating):
                if self.round_half and result.dtype == np.float32:
                    result = result.astype(np.float16).astype(np.float32)
                if self.noise:
                    result = result + np.asarray(self.noise, dtype=result.dtype)
            data = np.ascontiguousarray(result, dtype=dtype).tobytes()
            ctypes.memmove(address, data, nbytes)
        self.engine._executions += 1
