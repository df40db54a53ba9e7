"""The runtime, engines and execution contexts: a plan loaded and run on the fake CUDA stream."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np

from tensorrt._builder import _restore_weights
from tensorrt._core import (
    _ENGINE_MAGIC,
    _MAJOR,
    DataType,
    TensorIOMode,
    TensorLocation,
    __version__,
    _capability,
    _cudart,
    _gpu_name,
    _noise,
    nptype,
    volume,
)
from tensorrt._inspector import EngineInspector
from tensorrt._logging import ILogger, _log, _start
from tensorrt._onnx import _engine_dims, _session
from tensorrt._types import Dims, IHostMemory, _dims_tuple, _to_bytes

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
            _log(
                self.logger,
                error,
                "Error Code 1: Serialization (Serialization assertion failed: corrupt plan)",
            )
            return None
        onnx_bytes = data[start + length :]
        if hashlib.sha256(onnx_bytes).hexdigest() != meta.get("onnx_sha256"):
            _log(
                self.logger,
                error,
                "Error Code 1: Serialization (Serialization assertion failed: truncated plan)",
            )
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
            _log(
                self._logger,
                ILogger.Severity.ERROR,
                f"Error Code 3: API Usage Error (index {index} out of range)",
            )
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
            _log(
                self._logger,
                ILogger.Severity.ERROR,
                f"Error Code 3: API Usage Error (no tensor named {name})",
            )
            return DataType.FLOAT
        return DataType[tensor["dtype"]]

    def get_tensor_shape(self, name: str) -> Dims:
        tensor = self._by_name.get(name)
        if tensor is None:
            _log(
                self._logger,
                ILogger.Severity.ERROR,
                f"Error Code 3: API Usage Error (no tensor named {name})",
            )
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
