"""This machine's TensorRT and GPU: importing them, asking CUDA what is there, one line when it cannot.

cuda-python returns ``(error, *values)`` tuples rather than raising; every
call goes through :func:`check`, which turns a CUDA error into a
:class:`BackendError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from olvf.errors import BackendError

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


def check(result: Any, cudart: Any = None) -> Any:
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
        props = check(cudart.cudaGetDeviceProperties(device), cudart)
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
    check(cudart.cudaSetDevice(device), cudart)


def stream_handle(stream: Any) -> int:
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
