"""TensorRT engines through cuda-python: identity checked before deserialisation.

An engine runs only on the TensorRT version and the GPU (compute capability)
that built it, and only for the ONNX graph it was built from. Each of these is
recorded in the manifest at build time and compared here *before* the engine
is deserialised, so a copied or stale engine gets one line saying what differs
and the command that rebuilds it, instead of TensorRT's own error.

Buffers follow NVIDIA's cuda-python samples: device memory sized from the
optimisation profile's maximum shape and pinned host memory per tensor,
allocated once; one stream; ``set_input_shape`` / ``set_tensor_address`` /
``execute_async_v3`` per call, with no allocation per call.

Not run on real hardware in this project's CI (no GPU, no TensorRT): it is
tested there against a fake TensorRT and cuda-python (tests/fake_gpu), which
proves olvf's side; on real TensorRT and a GPU the conformance suite and
tests/runtime/test_tensorrt.py run it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olvf.errors import BackendError, BundleError, InputError
from olvf.runtime.bundle import Bundle
from olvf.runtime.manifest import EngineSpec
from olvf.runtime.runners.base import Runner, TensorSpec

INSTALL_HINT = (
    "install TensorRT and cuda-python (pip install 'olvf[tensorrt]' on x86: the tensorrt wheel fetches TensorRT "
    "from NVIDIA; "
    "on Jetson TensorRT comes with JetPack), or use --backend onnxruntime"
)


@dataclass(frozen=True)
class DeviceFacts:
    """What an engine must match: this machine's TensorRT and GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


def same_machine(spec: EngineSpec, here: DeviceFacts) -> bool:
    return (spec.tensorrt_version, spec.gpu_name, spec.compute_capability) == (
        here.tensorrt_version,
        here.gpu_name,
        here.compute_capability,
    )


def rebuild_command(bundle: Path) -> str:
    return f"olvf-infer --rebuild-engines --bundle {bundle}"


def check_engine(spec: EngineSpec, here: DeviceFacts, bundle: Bundle) -> None:
    """Refuse an engine built elsewhere or from another graph, naming what differs and the fix."""
    source_hash = bundle.manifest.files.get(spec.source_graph)
    if source_hash != spec.source_sha256:
        raise BundleError(
            f"engine {spec.file} is stale: it was built from another {spec.source_graph} than the bundle's; "
            f"rebuild it with {rebuild_command(bundle.path)}"
        )
    differences = []
    if spec.tensorrt_version != here.tensorrt_version:
        differences.append(f"TensorRT {spec.tensorrt_version}, here {here.tensorrt_version}")
    if spec.compute_capability != here.compute_capability or spec.gpu_name != here.gpu_name:
        differences.append(
            f"GPU {spec.gpu_name} (compute {spec.compute_capability}), "
            f"here {here.gpu_name} (compute {here.compute_capability})"
        )
    if differences:
        raise BundleError(
            f"engine {spec.file} was built for {'; '.join(differences)}; engines do not move between "
            f"TensorRT versions or GPUs: rebuild it here with {rebuild_command(bundle.path)}"
        )


def import_tensorrt() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError(f"TensorRT is not installed: {INSTALL_HINT}") from None
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise BackendError(f"cuda-python is not installed: {INSTALL_HINT}") from None
    return trt, cudart


def _error_name(cudart: Any, error: Any) -> str:
    try:
        name = cudart.cudaGetErrorName(error)[1]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # naming the error must not hide it
        return str(error)


def _check(result: Any, cudart: Any = None) -> Any:
    """cuda-python returns (error, *values); turn an error into a one-line BackendError."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        name = _error_name(cudart, error) if cudart is not None else str(error)
        raise BackendError(f"CUDA call failed ({name}); check the GPU driver with nvidia-smi")
    return values[0] if len(values) == 1 else values


def device_facts(device: int = 0) -> DeviceFacts:
    """This machine's TensorRT version and GPU ``device``; one line when there is no usable GPU."""
    trt, cudart = import_tensorrt()
    try:
        error, count = cudart.cudaGetDeviceCount()
        if int(error) != 0 or count <= device:
            found = f"CUDA says {_error_name(cudart, error)}" if int(error) else f"the driver reports {count} GPUs"
            raise BackendError(
                f"no CUDA GPU {device} here (TensorRT is installed, but {found}); check nvidia-smi, "
                "or in Docker run with --runtime nvidia"
            )
        props = _check(cudart.cudaGetDeviceProperties(device), cudart)
    except BackendError:
        raise
    except Exception as exc:  # cuda-python raises, not returns, when libcuda itself cannot be loaded
        raise BackendError(
            f"no usable CUDA driver here ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "check nvidia-smi, or in Docker run with --runtime nvidia"
        ) from None
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return DeviceFacts(trt.__version__, name.strip("\x00").strip(), f"{props.major}.{props.minor}")


def select_device(device: int) -> None:
    """Make ``device`` current for this thread: TensorRT builds and runs on the current device."""
    _, cudart = import_tensorrt()
    _check(cudart.cudaSetDevice(device), cudart)


def _stream_handle(stream: Any) -> int:
    """The raw handle execute_async_v3 takes (int(cuda_object) is deprecated in cuda-bindings 13)."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle

        return int(get_cuda_native_handle(stream))
    except (ImportError, TypeError):
        return int(stream)


def tensorrt_unavailable(device: int = 0) -> str | None:
    """Why TensorRT engines cannot be built or run here, or None when they can."""
    try:
        device_facts(device)
    except BackendError as exc:
        return str(exc)
    return None


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
    def from_bundle(cls, bundle: Bundle, role: str, precision: str | None = None, *, device: int = 0) -> TensorRTRunner:
        """This machine's engine for ``role``; engines decide their precision, ``precision`` is not used."""
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
        _check(cudart.cudaSetDevice(self.device_index), cudart)
        logger = trt.Logger(trt.Logger.ERROR)
        runtime = trt.Runtime(logger)
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
        self._stream = _check(cudart.cudaStreamCreate(), cudart)
        self._stream_handle = _stream_handle(self._stream)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        # The profile's largest shapes bound every call: size every buffer for them, once.
        largest = {n: tuple(self._engine.get_tensor_profile_shape(n, 0)[2]) for n in inputs}
        for name in inputs:
            self._context.set_input_shape(name, largest[name])
        specs = []
        for name in names:
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            shape = largest[name] if name in largest else tuple(self._context.get_tensor_shape(name))
            if name in largest:
                specs.append(TensorSpec(name, (None, *shape[1:]), dtype))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            host_ptr = _check(cudart.cudaMallocHost(nbytes), cudart)
            raw = (ctypes.c_byte * nbytes).from_address(host_ptr)
            host = np.frombuffer(raw, dtype=dtype)
            try:
                device_ptr = _check(cudart.cudaMalloc(nbytes), cudart)
            except BackendError:
                cudart.cudaFreeHost(host_ptr)
                raise
            self._buffers[name] = _Buffer(name, name in largest, dtype, host, host_ptr, device_ptr)
            self._context.set_tensor_address(name, device_ptr)
        return specs

    def run_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        # Another library on this thread (ONNX Runtime's CUDA provider) may have made another GPU current.
        _check(cudart.cudaSetDevice(self.device_index), cudart)
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
            _check(cudart.cudaMemcpyAsync(buffer.device, flat.ctypes.data, array.nbytes, h2d, self._stream), cudart)
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
            _check(cudart.cudaMemcpyAsync(view.ctypes.data, buffer.device, view.nbytes, d2h, self._stream), cudart)
        _check(cudart.cudaStreamSynchronize(self._stream), cudart)
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
