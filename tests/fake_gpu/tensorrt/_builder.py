"""The builder: profiles, timing caches, configurations, and the plan a build writes."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from tensorrt._core import (
    _CACHE_MAGIC,
    _ENGINE_MAGIC,
    _MAJOR,
    _WEAK_TYPING_FLAGS,
    BuilderFlag,
    ProfilingVerbosity,
    __version__,
    _capability,
    _gpu_name,
    _layer_style,
    _noise,
)
from tensorrt._logging import ILogger, _log, _start
from tensorrt._network import INetworkDefinition
from tensorrt._onnx import _engine_dims
from tensorrt._types import Dims, IHostMemory, _dims_tuple, _to_bytes, _Trampoline

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
    return {
        "tensorrt_version": __version__,
        "gpu_name": _gpu_name(),
        "compute_capability": _capability(),
    }


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
            _log(
                self._logger,
                ILogger.Severity.WARNING,
                "Timing cache is corrupted or invalid; an empty one is used",
            )
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
                    {
                        "name": t["name"],
                        "dims": _engine_dims(t["shape"]),
                        "dtype": t["dtype"],
                    }
                    for t in io
                    if t["mode"] == "input"
                ],
                "outputs": [
                    {
                        "name": t["name"],
                        "dims": _engine_dims(t["shape"]),
                        "dtype": "HALF" if half else t["dtype"],
                    }
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
    name: str,
    op: str,
    onnx_name: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "name": name,
        "op": op,
        "onnx": onnx_name,
        "inputs": inputs,
        "outputs": outputs,
    }
