"""This machine's TensorRT and GPU: importing them, starting them, and one line naming the fix when they fail.

cuda-python returns ``(error, *values)`` tuples rather than raising; every call goes through
:func:`check`, which turns a CUDA error into a :class:`BackendError` naming it. On an error
cuda-python 12.8 and later return ``None`` for each value, 12.6 the default value (``0``, an empty
handle), so a value is only read after its error was checked. Without libcuda (Docker without the
NVIDIA runtime) 12.8 and later return ``cudaErrorInsufficientDriver`` from every call, while 12.6
*raises* RuntimeError("Failed to dlopen libcuda.so.1"); both are met here (tests/fake_gpu/surface
records both).

TensorRT starts CUDA on its own: ``trt.Builder(logger)`` and ``trt.Runtime(logger)`` raise
``TypeError: pybind11::init(): factory function returned nullptr`` when it cannot (a driver older
than TensorRT's CUDA, no usable device), even where cuda-python works. They are only made through
:func:`create_builder` / :func:`create_runtime`, which turn that into a BackendError carrying what
TensorRT logged. TensorRT keeps the first logger it is given for the whole process (and says so when
given another), so there is one, :func:`tensorrt_logger`; it writes to stderr, where ``trt.Logger``
would write to stdout, which ``olvf-infer --json`` keeps for the reports.
"""

from __future__ import annotations

import contextlib
import re
import sys
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from olvf.errors import BackendError
from olvf.runtime.runners.tensorrt.gpu_access import gpu_access_problem

INSTALL_HINT = (
    "install TensorRT and cuda-python (pip install 'olvf[tensorrt]' on x86: the tensorrt wheel fetches TensorRT "
    "from NVIDIA; on Jetson TensorRT comes with JetPack and pip install 'olvf[jetson]' adds cuda-python), "
    "or use --backend onnxruntime"
)
DOCKER_HINT = "in Docker, start the container with --gpus all (x86) or --runtime nvidia (Jetson)"

# What a CUDA error at start-up means for the person at the machine.
_START_ERRORS = {
    2: "the GPU's memory is full: close other GPU programs",
    35: "the NVIDIA driver is missing or older than this CUDA needs: check nvidia-smi and update the driver",
    46: "the GPU is busy or set to exclusive use by another process (nvidia-smi shows which)",
    100: "no GPU is visible to this process",
    801: "the GPU refused the operation: on a Jetson this is a user who cannot open /dev/nvmap",
    803: "the NVIDIA kernel module and driver libraries differ in version: reboot after the driver update",
}


@dataclass(frozen=True)
class DeviceFacts:
    """What an engine must match: this machine's TensorRT and GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


def import_tensorrt() -> tuple[Any, Any]:
    """TensorRT and cuda-python's runtime module; "not installed" only when they are not, else why they broke."""
    try:
        import tensorrt as trt
    except ModuleNotFoundError as exc:
        if exc.name not in ("tensorrt", "tensorrt_bindings"):
            raise BackendError(f"TensorRT is installed but cannot load ({exc}); reinstall it") from None
        raise BackendError(f"TensorRT is not installed: {INSTALL_HINT}") from None
    except (ImportError, OSError) as exc:  # e.g. libnvinfer.so.10 missing: the bindings without their libraries
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BackendError(
            f"TensorRT is installed but its libraries do not load ({first}); install TensorRT's libraries "
            "(pip install 'olvf[tensorrt]' on x86, JetPack on Jetson) or use --backend onnxruntime"
        ) from None
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


def _no_gpu(reason: str, code: int | None) -> BackendError:
    """One line: what CUDA said, and the fix the device nodes or the error code point to."""
    access = gpu_access_problem()
    if access is not None:
        return BackendError(f"no usable CUDA GPU here ({reason}): {access}")
    meaning = _START_ERRORS.get(code or -1)
    fix = f"{meaning}; {DOCKER_HINT}" if meaning else f"check the GPU and its driver with nvidia-smi; {DOCKER_HINT}"
    return BackendError(f"no usable CUDA GPU here ({reason}): {fix}")


def device_facts(device: int = 0) -> DeviceFacts:
    """This machine's TensorRT version and GPU ``device``, once TensorRT has started on it; else one line why not."""
    trt, cudart = import_tensorrt()
    try:
        error, count = cudart.cudaGetDeviceCount()
    except RuntimeError as exc:  # cuda-python 12.6 raises when libcuda.so.1 cannot be loaded
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _no_gpu(f"cuda-python: {first}", 35) from None
    if int(error) != 0:  # count is None (cuda-python >= 12.8) or 0 (12.6): never read it
        raise _no_gpu(f"CUDA says {_error_name(cudart, error)}", int(error))
    if count <= device:
        raise BackendError(
            f"no CUDA GPU {device} here (the driver reports {count} GPU{'s' if count != 1 else ''}); "
            "use --device with one of them, see nvidia-smi"
        )
    error, props = cudart.cudaGetDeviceProperties(device)
    if int(error) != 0:
        raise _no_gpu(f"CUDA says {_error_name(cudart, error)} for GPU {device}", int(error))
    select_device(device)
    create_runtime(trt)  # TensorRT starts CUDA itself, and can fail where cuda-python did not
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return DeviceFacts(trt.__version__, name.strip("\x00").strip(), f"{props.major}.{props.minor}")


def select_device(device: int) -> None:
    """Make ``device`` current for this thread: TensorRT builds and runs on the current device."""
    _, cudart = import_tensorrt()
    check(cudart.cudaSetDevice(device), cudart)


def stream_handle(stream: Any) -> int:
    """The raw handle execute_async_v3 takes (int(cuda_object) is deprecated in cuda-bindings 13; 12.6 lacks utils)."""
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


# --- TensorRT's logger and its two factories ----------------------------------------------------------------

_LOGGERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_RUNTIMES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def tensorrt_logger(trt: Any) -> Any:
    """The process's one TensorRT logger: warnings and errors to stderr, the last errors kept for messages."""
    logger = _LOGGERS.get(trt)
    if logger is None:
        logger = _LOGGERS[trt] = _stderr_logger(trt)
    return logger


def _stderr_logger(trt: Any) -> Any:
    warning = int(trt.ILogger.Severity.WARNING)
    error = int(trt.ILogger.Severity.ERROR)

    class StderrLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: deque[str] = deque(maxlen=4)
            self.quiet = False  # while TensorRT starts: its error goes into our one-line message instead

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level <= error:
                self.errors.append(" ".join(str(msg).split()))
            if level <= warning and not self.quiet:
                print(f"TensorRT {'error' if level <= error else 'warning'}: {msg}", file=sys.stderr, flush=True)

    return StderrLogger()


@contextlib.contextmanager
def _starting(trt: Any) -> Iterator[Any]:
    """TensorRT's logger, quiet while a Builder or Runtime is made (a failure is reported in one line)."""
    logger = tensorrt_logger(trt)
    logger.errors.clear()  # only what TensorRT says now explains a failure now
    logger.quiet = True
    try:
        yield logger
    finally:
        logger.quiet = False


def _cannot_start(trt: Any, what: str, exc: Exception) -> BackendError:
    errors = tensorrt_logger(trt).errors
    said = errors[-1] if errors else str(exc)
    code = re.search(r"CUDA initialization failure with error:? (\d+)", said)
    reason = f"TensorRT {trt.__version__} cannot start ({what}: {said[:240]})"
    if code is None:
        return BackendError(f"{reason}; check the GPU with nvidia-smi, or use --backend onnxruntime")
    number = int(code.group(1))
    if number == 35:
        return BackendError(
            f"{reason}: the NVIDIA driver is older than this TensorRT's CUDA needs; update the driver "
            "(nvidia-smi shows it) or install a TensorRT for it (olvf[tensorrt] pins TensorRT 10 for CUDA 12), "
            "or use --backend onnxruntime"
        )
    return _no_gpu(reason, number)


def create_runtime(trt: Any) -> Any:
    """The process's ``trt.Runtime``, made once with the one logger; a BackendError when TensorRT cannot start."""
    runtime = _RUNTIMES.get(trt)
    if runtime is None:
        with _starting(trt) as logger:
            try:
                runtime = trt.Runtime(logger)
            except (TypeError, RuntimeError) as exc:
                raise _cannot_start(trt, "trt.Runtime", exc) from None
        _RUNTIMES[trt] = runtime
    return runtime


def create_builder(trt: Any) -> Any:
    """A ``trt.Builder`` with the process's logger; a BackendError when TensorRT cannot start."""
    with _starting(trt) as logger:
        try:
            return trt.Builder(logger)
        except (TypeError, RuntimeError) as exc:
            raise _cannot_start(trt, "trt.Builder", exc) from None
