"""The TensorRT runner: this machine's engine for a role, through cuda-python.

Buffers follow NVIDIA's cuda-python samples: device memory sized from the
optimisation profile's maximum shape and pinned host memory per tensor,
allocated once; one stream; ``set_input_shape`` / ``set_tensor_address`` /
``execute_async_v3`` per call, with no allocation per call.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olvf.errors import BackendError, BundleError, InputError
from olvf.runtime.bundle.files import Bundle
from olvf.runtime.bundle.manifest import EngineSpec
from olvf.runtime.runners.base import Runner, TensorSpec
from olvf.runtime.runners.tensorrt.device import (
    DeviceFacts,
    check,
    create_runtime,
    device_facts,
    import_tensorrt,
    stream_handle,
)
from olvf.runtime.runners.tensorrt.identity import check_engine, rebuild_command, same_machine


@dataclass
class _Buffer:
    name: str
    is_input: bool
    dtype: np.dtype
    host: np.ndarray
    host_ptr: int
    device: int


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(self, bundle: Bundle, spec: EngineSpec, *, device: int = 0, here: DeviceFacts | None = None) -> None:
        super().__init__()
        self.bundle = bundle
        self.spec = spec
        self.device_index = device
        self.here = here
        self.max_batch = spec.max_batch
        self.precision = spec.precision
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._buffers: dict[str, _Buffer] = {}
        self._cudart: Any = None
        self._stream_handle = 0

    @classmethod
    def from_bundle(cls, bundle: Bundle, role: str, precision: str | None = None, **options: Any) -> TensorRTRunner:
        """This machine's engine for ``role``; engines decide their precision, ``precision`` is not used.

        ``device``: the GPU index (default 0), the one option this backend takes.
        """
        device = options.pop("device", 0)
        if options:
            raise BackendError(f"backend 'tensorrt' takes only device=, not {', '.join(sorted(options))}")
        import_tensorrt()  # "not installed" says more than "no engine" on a machine without TensorRT
        if not isinstance(device, int) or isinstance(device, bool):
            raise BackendError(f"backend 'tensorrt' takes a GPU index as device (0, 1, ...), not {device!r}")
        here = device_facts(device)
        engines = [e for e in bundle.manifest.engines if e.role == role]
        if not engines:
            raise BundleError(
                f"bundle {bundle.path} has no TensorRT engine for the {role}; build them on this machine with "
                f"{rebuild_command(bundle.path)}"
            )
        ours = [e for e in engines if same_machine(e, here)]
        spec = ours[-1] if ours else engines[0]
        check_engine(spec, here, bundle)  # names what differs for an engine from elsewhere
        return cls(bundle, spec, device=device, here=here)

    def load_impl(self) -> list[TensorSpec]:
        trt, cudart = import_tensorrt()
        self._cudart = cudart
        check_engine(self.spec, self.here or device_facts(self.device_index), self.bundle)
        try:
            return self._allocate(trt, cudart)
        except BaseException:
            self.close_impl()  # a half-loaded engine must not keep GPU memory that the fallback backend needs
            raise

    def _allocate(self, trt: Any, cudart: Any) -> list[TensorSpec]:
        check(cudart.cudaSetDevice(self.device_index), cudart)
        runtime = create_runtime(trt)  # the process's one Runtime, with the one logger TensorRT keeps
        self._engine = runtime.deserialize_cuda_engine(Path(self.bundle.file(self.spec.file)).read_bytes())
        if self._engine is None:
            raise BundleError(
                f"TensorRT could not load {self.spec.file}; rebuild it: {rebuild_command(self.bundle.path)}"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(
                f"TensorRT has not enough GPU memory to run {self.spec.file}; close other GPU programs or rebuild "
                f"with a smaller batch: olvf-infer --rebuild-engines --engine-max-batch 8 --bundle {self.bundle.path}"
            )
        self._stream = check(cudart.cudaStreamCreate(), cudart)
        self._stream_handle = stream_handle(self._stream)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        # The profile's largest shapes bound every call: size every buffer for them, once.
        largest = {n: tuple(self._engine.get_tensor_profile_shape(n, 0)[2]) for n in inputs}
        for name in inputs:
            if not self._context.set_input_shape(name, largest[name]):  # False: TensorRT refused, and said why
                raise BundleError(
                    f"TensorRT refuses the largest shape {largest[name]} of {self.spec.file}'s input {name}; "
                    f"rebuild the engine: {rebuild_command(self.bundle.path)}"
                )
        specs = []
        for name in names:
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            shape = largest[name] if name in largest else tuple(self._context.get_tensor_shape(name))
            if name in largest:
                specs.append(TensorSpec(name, (None, *shape[1:]), dtype))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            host_ptr = check(cudart.cudaMallocHost(nbytes), cudart)
            raw = (ctypes.c_byte * nbytes).from_address(host_ptr)
            host = np.frombuffer(raw, dtype=dtype)
            try:
                device_ptr = check(cudart.cudaMalloc(nbytes), cudart)
            except BackendError:
                cudart.cudaFreeHost(host_ptr)
                raise
            self._buffers[name] = _Buffer(name, name in largest, dtype, host, host_ptr, device_ptr)
            if not self._context.set_tensor_address(name, device_ptr):
                raise BackendError(
                    f"TensorRT refuses the GPU buffer for {name} of {self.spec.file}; see its message above"
                )
        return specs

    def run_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        # Another library on this thread (ONNX Runtime's CUDA provider) may have made another GPU current.
        check(cudart.cudaSetDevice(self.device_index), cudart)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, array in feeds.items():
            buffer = self._buffers[name]
            if not self._context.set_input_shape(name, array.shape):
                low, _, high = self._engine.get_tensor_profile_shape(name, 0)
                raise InputError(
                    f"{self.spec.file}: input {name} of shape {array.shape} is outside the engine's profile "
                    f"{tuple(low)}..{tuple(high)}"
                )
            flat = buffer.host[: array.size]
            flat[:] = array.ravel()
            check(cudart.cudaMemcpyAsync(buffer.device, flat.ctypes.data, array.nbytes, h2d, self._stream), cudart)
        if not self._context.execute_async_v3(self._stream_handle):
            raise BackendError(f"TensorRT failed to run {self.spec.file}")
        shapes = {}
        for buffer in self._buffers.values():
            if buffer.is_input:
                continue
            shape = tuple(self._context.get_tensor_shape(buffer.name))
            shapes[buffer.name] = shape
            count = int(np.prod(shape))
            view = buffer.host[:count]
            check(cudart.cudaMemcpyAsync(view.ctypes.data, buffer.device, view.nbytes, d2h, self._stream), cudart)
        check(cudart.cudaStreamSynchronize(self._stream), cudart)
        # Copies: the pinned buffers are reused by the next call.
        return {name: self._buffers[name].host[: int(np.prod(s))].reshape(s).copy() for name, s in shapes.items()}

    def close_impl(self) -> None:
        cudart = self._cudart
        if cudart is None:
            return
        cudart.cudaSetDevice(self.device_index)
        for buffer in self._buffers.values():
            cudart.cudaFree(buffer.device)
            cudart.cudaFreeHost(buffer.host_ptr)
        self._buffers.clear()
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
        self._context = self._engine = self._stream = None

    @property
    def device(self) -> str:
        return f"cuda:{self.device_index}"
