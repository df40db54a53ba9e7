"""Test double of cuda-python's ``cuda.bindings.runtime`` ("cudart"). Never use it in production.

The subset olvf calls, with cuda-python's calling convention: every function
returns a tuple whose first element is a ``cudaError_t`` (``(err,)`` when
there is nothing else, ``(err, None)`` when a value-returning call fails).

"Device" memory and pinned host memory are ctypes buffers kept alive in
``_allocations``; pointers are plain ints, as in cuda-python. Neither is
zeroed: both are filled with 0xFF bytes (NaN as float), as real CUDA memory
holds garbage, so reading something never written shows up.

Streams are queues: ``cudaMemcpyAsync`` involving pinned host memory, and
the fake TensorRT's ``execute_async_v3``, are only *enqueued*; they run at
``cudaStreamSynchronize`` / ``cudaDeviceSynchronize`` / ``cudaFree``, so code
that reads results before synchronising reads stale data, as on a GPU.
Copies from or to pageable memory behave like CUDA's: host-to-device takes
the data at call time, device-to-host completes before returning.

Configuration, read at each call (``tests/fake_gpu_fixture.py`` sets them):

``OLVF_FAKE_GPU_COUNT``       GPUs (default 1; 0: ``cudaErrorNoDevice``).
``OLVF_FAKE_GPU_NAME``        GPU name (default "Fake GPU"); ``OLVF_FAKE_GPU_CC``: "8.9".
``OLVF_FAKE_GPU_MEMORY``      bytes of device memory (default 8 GiB); ``cudaMalloc`` beyond it
                              returns ``cudaErrorMemoryAllocation``.
``OLVF_FAKE_CUDA_PYTHON``     which cuda-python to behave like: "12.9.10" (default) or "12.6.2". They
                              differ where olvf must cope with both (tests/fake_gpu/surface records
                              the real ones): on an error 12.6 still returns a value (``(err, 0)``,
                              ``(err, <empty stream>)``), 12.8+ returns ``(err, None)``; without
                              libcuda 12.6 *raises* RuntimeError("Failed to dlopen libcuda.so.1",
                              then 'Function "cuInit" not found'), 12.8+ returns
                              ``cudaErrorInsufficientDriver`` from every call; 12.6 has no
                              ``cuda.bindings.utils``.
``OLVF_FAKE_CUDA_DRIVER``     "ok" (default) or "missing": libcuda.so.1 cannot be loaded (Docker
                              without ``--runtime nvidia``).
``OLVF_FAKE_CUDA_INIT_ERROR`` a CUDA error code every device call returns (default 0: none), e.g.
                              100 or 801 as on a Jetson whose /dev/nvmap the user cannot open.

``_stats`` counts calls that succeeded (malloc, free, malloc_host,
free_host, memcpy, stream_create, stream_destroy, synchronize);
``_live_allocations()`` says how many buffers are not freed yet.
"""

from __future__ import annotations

import ctypes
import enum
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_OLVF_FAKE = True  # lets the fake TensorRT know it is talking to this module

_ALIGNMENT = 256  # cudaMalloc's alignment
_POISON = 0xFF


class _CudaEnum(enum.IntEnum):
    """cuda-python 13 enums: int-like, and str() / format() give the repr."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self.name}: {int(self)}>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)


class cudaError_t(_CudaEnum):
    """A subset of the real members, with their real values (checked against tests/fake_gpu/surface)."""

    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInitializationError = 3
    cudaErrorInvalidMemcpyDirection = 21
    cudaErrorInsufficientDriver = 35
    cudaErrorDevicesUnavailable = 46
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalAddress = 700
    cudaErrorLaunchFailure = 719
    cudaErrorNotSupported = 801
    cudaErrorSystemNotReady = 802
    cudaErrorSystemDriverMismatch = 803


class cudaMemcpyKind(_CudaEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


_ERROR_STRINGS = {
    cudaError_t.cudaSuccess: b"no error",
    cudaError_t.cudaErrorInvalidValue: b"invalid argument",
    cudaError_t.cudaErrorMemoryAllocation: b"out of memory",
    cudaError_t.cudaErrorInitializationError: b"initialization error",
    cudaError_t.cudaErrorInvalidMemcpyDirection: b"invalid copy direction for memcpy",
    cudaError_t.cudaErrorInsufficientDriver: b"CUDA driver version is insufficient for CUDA runtime version",
    cudaError_t.cudaErrorDevicesUnavailable: b"CUDA-capable device(s) is/are busy or unavailable",
    cudaError_t.cudaErrorNoDevice: b"no CUDA-capable device is detected",
    cudaError_t.cudaErrorInvalidDevice: b"invalid device ordinal",
    cudaError_t.cudaErrorInvalidResourceHandle: b"invalid resource handle",
    cudaError_t.cudaErrorIllegalAddress: b"an illegal memory access was encountered",
    cudaError_t.cudaErrorLaunchFailure: b"unspecified launch failure",
    cudaError_t.cudaErrorNotSupported: b"operation not supported",
    cudaError_t.cudaErrorSystemNotReady: b"system not yet initialized",
    cudaError_t.cudaErrorSystemDriverMismatch: b"system has unsupported display driver / cuda driver combination",
}


# --- configuration ---------------------------------------------------------------------------------------------


def _device_count() -> int:
    return int(os.environ.get("OLVF_FAKE_GPU_COUNT", "1"))


def _gpu_name() -> str:
    return os.environ.get("OLVF_FAKE_GPU_NAME", "Fake GPU")


def _capability() -> tuple[int, int]:
    major, minor = os.environ.get("OLVF_FAKE_GPU_CC", "8.9").split(".")
    return int(major), int(minor)


def _memory() -> int:
    return int(os.environ.get("OLVF_FAKE_GPU_MEMORY", str(8 * 1024**3)))


def _version() -> tuple[int, ...]:
    return tuple(int(p) for p in os.environ.get("OLVF_FAKE_CUDA_PYTHON", "12.9.10").split(".")[:2])


def _driver_missing() -> bool:
    return os.environ.get("OLVF_FAKE_CUDA_DRIVER", "ok") == "missing"


def _init_error() -> int:
    return int(os.environ.get("OLVF_FAKE_CUDA_INIT_ERROR", "0") or 0)


def _returns_none_on_error() -> bool:
    """cuda-python 12.8 and later return None for every value of a failed call; 12.6 returns the default."""
    return _version() >= (12, 8)


_dlopen_tried = [False]


def _driver_error() -> cudaError_t | None:
    """Why no call reaches a device at all: the driver library is missing or CUDA cannot initialise."""
    if _driver_missing():
        if not _returns_none_on_error():  # cuda-python 12.6 raises instead
            message = 'Function "cuInit" not found' if _dlopen_tried[0] else "Failed to dlopen libcuda.so.1"
            _dlopen_tried[0] = True
            raise RuntimeError(message)
        return cudaError_t.cudaErrorInsufficientDriver
    if _init_error():
        return cudaError_t(_init_error())
    if _device_count() <= 0:
        return cudaError_t.cudaErrorNoDevice
    return None


def _failed(error: cudaError_t, default: Any) -> tuple[cudaError_t, Any]:
    return error, (None if _returns_none_on_error() else default)


# --- state -----------------------------------------------------------------------------------------------------


@dataclass
class _Allocation:
    buffer: Any  # the ctypes array that owns the bytes
    address: int  # aligned start handed to the caller
    size: int
    kind: str  # "device" or "host" (pinned)


_allocations: dict[int, _Allocation] = {}
_reserved: dict[int, int] = {}  # device memory TensorRT's execution contexts hold (id -> bytes)
_streams: dict[int, list[Callable[[], None]]] = {0: []}  # 0: the legacy default stream
_stream_storage: dict[int, Any] = {}
_next_stream = [0x5EA0_0000]
_current_device = [0]
_sticky_error: list[cudaError_t] = []  # a failed kernel poisons the context, as on a GPU
_last_exception: list[BaseException] = []
_stats: dict[str, int] = {
    "malloc": 0,
    "free": 0,
    "malloc_host": 0,
    "free_host": 0,
    "memcpy": 0,
    "stream_create": 0,
    "stream_destroy": 0,
    "synchronize": 0,
}


def _live_allocations(kind: str | None = None) -> int:
    return sum(1 for a in _allocations.values() if kind is None or a.kind == kind)


def _find(pointer: int, nbytes: int = 1, kind: str | None = None) -> _Allocation | None:
    """The allocation holding [pointer, pointer + nbytes), if any (of the given kind)."""
    for allocation in _allocations.values():
        if kind is not None and allocation.kind != kind:
            continue
        if allocation.address <= pointer and pointer + max(nbytes, 1) <= allocation.address + allocation.size:
            return allocation
    return None


def _touches(pointer: int, kind: str) -> bool:
    """Whether pointer lies inside any allocation of that kind (even if the range overruns it)."""
    return any(a.kind == kind and a.address <= pointer < a.address + a.size for a in _allocations.values())


def _as_int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "__int__"):
        return int(value)
    raise TypeError(f"Argument must be an int or a CUDA handle, not {type(value).__name__}")


def _stream_handle(stream: Any) -> int:
    return _as_int(stream)


def _sticky() -> cudaError_t | None:
    return _sticky_error[0] if _sticky_error else None


def _reserve(owner: int, nbytes: int) -> bool:
    """Device memory the fake TensorRT holds for an execution context; False when the GPU is full."""
    if _used() + nbytes > _memory():
        return False
    _reserved[owner] = nbytes
    return True


def _unreserve(owner: int) -> None:
    _reserved.pop(owner, None)


def _enqueue(stream: Any, operation: Callable[[], None]) -> cudaError_t:
    """Queue work on a stream (used by the fake TensorRT). It runs when the stream is synchronised."""
    handle = _stream_handle(stream)
    if handle not in _streams:
        return cudaError_t.cudaErrorInvalidResourceHandle
    if _sticky() is not None:
        return _sticky()  # type: ignore[return-value]
    _streams[handle].append(operation)
    return cudaError_t.cudaSuccess


def _flush(handle: int) -> None:
    queue = _streams.get(handle, [])
    while queue:
        operation = queue.pop(0)
        if _sticky() is not None:
            continue  # a failed kernel: everything after it is lost
        try:
            operation()
        except Exception as error:  # noqa: BLE001 - a "kernel" failed: record it as CUDA would
            _sticky_error.append(cudaError_t.cudaErrorLaunchFailure)
            _last_exception.append(error)
            print("fake CUDA: work on a stream failed:", file=sys.stderr)
            traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)


def _flush_all() -> None:
    for handle in list(_streams):
        _flush(handle)


# --- handles and properties ------------------------------------------------------------------------------------


class cudaStream_t:
    """A stream handle: ``int(stream)`` is the handle; ``getPtr()`` the address of its storage, as in cuda-python."""

    def __init__(self, init_value: Any = 0) -> None:
        self._value = _as_int(init_value)
        self._storage = ctypes.c_void_p(self._value)

    def __int__(self) -> int:
        return self._value

    __index__ = __int__

    def getPtr(self) -> int:
        return ctypes.addressof(self._storage)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, cudaStream_t) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"<CUstream {self._value:#x}>"


class cudaDeviceProp:
    """The few fields of cudaDeviceProp a caller may read. ``name`` is bytes, as in cuda-python."""

    def __init__(self, name: bytes = b"", major: int = 0, minor: int = 0) -> None:
        self.name = name
        self.major = major
        self.minor = minor
        self.totalGlobalMem = 8 * 1024**3
        self.multiProcessorCount = 16
        self.integrated = 0
        self.warpSize = 32

    def __repr__(self) -> str:
        return f"cudaDeviceProp(name={self.name!r}, major={self.major}, minor={self.minor})"


# --- device ----------------------------------------------------------------------------------------------------


def cudaGetDeviceCount() -> tuple[cudaError_t, int | None]:
    error = _driver_error()
    if error is not None:
        return _failed(error, 0)
    return cudaError_t.cudaSuccess, _device_count()


def _check_device(device: Any) -> cudaError_t:
    error = _driver_error()
    if error is not None:
        return error
    index = _as_int(device)
    if index < 0 or index >= _device_count():
        return cudaError_t.cudaErrorInvalidDevice
    return cudaError_t.cudaSuccess


def cudaGetDeviceProperties(device: Any) -> tuple[cudaError_t, cudaDeviceProp | None]:
    error = _check_device(device)
    if error != cudaError_t.cudaSuccess:
        return _failed(error, cudaDeviceProp())
    major, minor = _capability()
    props = cudaDeviceProp(_gpu_name().encode(), major, minor)
    props.totalGlobalMem = _memory()
    return cudaError_t.cudaSuccess, props


def cudaSetDevice(device: Any) -> tuple[cudaError_t]:
    error = _check_device(device)
    if error == cudaError_t.cudaSuccess:
        _current_device[0] = _as_int(device)
    return (error,)


def cudaGetDevice() -> tuple[cudaError_t, int | None]:
    error = _driver_error()
    if error is not None:
        return _failed(error, 0)
    return cudaError_t.cudaSuccess, _current_device[0]


def cudaDeviceSynchronize() -> tuple[cudaError_t]:
    error = _driver_error()
    if error is not None:
        return (error,)
    _flush_all()
    _stats["synchronize"] += 1
    return (_sticky() or cudaError_t.cudaSuccess,)


def _used() -> int:
    return sum(a.size for a in _allocations.values() if a.kind == "device") + sum(_reserved.values())


def cudaMemGetInfo() -> tuple[cudaError_t, int | None, int | None]:
    error = _driver_error()
    if error is not None:
        return (error, None, None) if _returns_none_on_error() else (error, 0, 0)
    return cudaError_t.cudaSuccess, max(0, _memory() - _used()), _memory()


def cudaGetErrorString(error: Any) -> tuple[cudaError_t, bytes]:
    return cudaError_t.cudaSuccess, _ERROR_STRINGS.get(_as_int(error), b"unrecognized error code")  # type: ignore[call-overload]


def cudaGetErrorName(error: Any) -> tuple[cudaError_t, bytes]:
    try:
        return cudaError_t.cudaSuccess, cudaError_t(_as_int(error)).name.encode()
    except ValueError:
        return cudaError_t.cudaErrorInvalidValue, b"cudaErrorUnknown"


# --- streams ---------------------------------------------------------------------------------------------------


def cudaStreamCreate() -> tuple[cudaError_t, cudaStream_t | None]:
    error = _driver_error()
    if error is not None:
        return _failed(error, cudaStream_t())
    _next_stream[0] += 0x100
    handle = _next_stream[0]
    _streams[handle] = []
    _stats["stream_create"] += 1
    return cudaError_t.cudaSuccess, cudaStream_t(handle)


def cudaStreamSynchronize(stream: Any) -> tuple[cudaError_t]:
    error = _driver_error()
    if error is not None:
        return (error,)
    handle = _stream_handle(stream)
    if handle not in _streams:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    _flush(handle)
    _stats["synchronize"] += 1
    return (_sticky() or cudaError_t.cudaSuccess,)


def cudaStreamDestroy(stream: Any) -> tuple[cudaError_t]:
    error = _driver_error()
    if error is not None:
        return (error,)
    handle = _stream_handle(stream)
    if handle == 0 or handle not in _streams:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    _flush(handle)  # work already queued still completes
    del _streams[handle]
    _stats["stream_destroy"] += 1
    return (cudaError_t.cudaSuccess,)


# --- memory ----------------------------------------------------------------------------------------------------


def _allocate(size: Any, kind: str) -> tuple[cudaError_t, int | None]:
    error = _driver_error()
    if error is not None:
        return _failed(error, 0)
    nbytes = _as_int(size)
    if nbytes < 0:
        return _failed(cudaError_t.cudaErrorInvalidValue, 0)
    if nbytes == 0:
        return cudaError_t.cudaSuccess, 0
    if kind == "device" and _used() + nbytes > _memory():
        return _failed(cudaError_t.cudaErrorMemoryAllocation, 0)
    buffer = (ctypes.c_char * (nbytes + _ALIGNMENT))()
    start = ctypes.addressof(buffer)
    address = (start + _ALIGNMENT - 1) // _ALIGNMENT * _ALIGNMENT
    ctypes.memset(address, _POISON, nbytes)
    _allocations[address] = _Allocation(buffer, address, nbytes, kind)
    _stats["malloc" if kind == "device" else "malloc_host"] += 1
    return cudaError_t.cudaSuccess, address


def _release(pointer: Any, kind: str) -> tuple[cudaError_t]:
    error = _driver_error()
    if error is not None:
        return (error,)
    address = _as_int(pointer)
    if address == 0:
        return (cudaError_t.cudaSuccess,)
    allocation = _allocations.get(address)
    if allocation is None or allocation.kind != kind:
        return (cudaError_t.cudaErrorInvalidValue,)
    _flush_all()  # cudaFree / cudaFreeHost synchronise the device
    del _allocations[address]
    _stats["free" if kind == "device" else "free_host"] += 1
    return (cudaError_t.cudaSuccess,)


def cudaMalloc(size: Any) -> tuple[cudaError_t, int | None]:
    return _allocate(size, "device")


def cudaMallocHost(size: Any) -> tuple[cudaError_t, int | None]:
    return _allocate(size, "host")


def cudaFree(devPtr: Any) -> tuple[cudaError_t]:
    return _release(devPtr, "device")


def cudaFreeHost(ptr: Any) -> tuple[cudaError_t]:
    return _release(ptr, "host")


def _direction(dst: int, src: int, count: int, kind: cudaMemcpyKind) -> cudaMemcpyKind | cudaError_t:
    """Check the pointers against the copy kind; return the resolved kind or an error."""
    if kind == cudaMemcpyKind.cudaMemcpyDefault:
        src_device = _touches(src, "device")
        dst_device = _touches(dst, "device")
        kind = {
            (False, False): cudaMemcpyKind.cudaMemcpyHostToHost,
            (False, True): cudaMemcpyKind.cudaMemcpyHostToDevice,
            (True, False): cudaMemcpyKind.cudaMemcpyDeviceToHost,
            (True, True): cudaMemcpyKind.cudaMemcpyDeviceToDevice,
        }[(src_device, dst_device)]
    src_is_device = kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
    dst_is_device = kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
    for pointer, is_device in ((src, src_is_device), (dst, dst_is_device)):
        if is_device and _find(pointer, count, "device") is None:
            return cudaError_t.cudaErrorInvalidValue  # not device memory, or the copy overruns the allocation
        if not is_device and _touches(pointer, "device"):
            return cudaError_t.cudaErrorInvalidValue  # a device pointer where host memory was promised
        if not is_device and _touches(pointer, "host") and _find(pointer, count, "host") is None:
            return cudaError_t.cudaErrorInvalidValue  # overruns a pinned buffer
    return kind


def cudaMemcpyAsync(dst: Any, src: Any, count: Any, kind: Any, stream: Any) -> tuple[cudaError_t]:
    error = _driver_error()
    if error is not None:
        return (error,)
    if _sticky() is not None:
        return (_sticky(),)  # type: ignore[return-value]
    handle = _stream_handle(stream)
    if handle not in _streams:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    try:
        kind = cudaMemcpyKind(_as_int(kind))
    except ValueError:
        return (cudaError_t.cudaErrorInvalidMemcpyDirection,)
    destination, source, nbytes = _as_int(dst), _as_int(src), _as_int(count)
    if nbytes == 0:
        return (cudaError_t.cudaSuccess,)
    resolved = _direction(destination, source, nbytes, kind)
    if isinstance(resolved, cudaError_t):
        return (resolved,)
    queue = _streams[handle]
    if resolved == cudaMemcpyKind.cudaMemcpyHostToDevice and _find(source, nbytes, "host") is None:
        # Pageable source: CUDA stages it before returning, so later host writes do not reach the device.
        data = ctypes.string_at(source, nbytes)
        queue.append(lambda: ctypes.memmove(destination, data, nbytes))
    elif resolved in (cudaMemcpyKind.cudaMemcpyDeviceToHost, cudaMemcpyKind.cudaMemcpyHostToHost) and (
        _find(destination, nbytes, "host") is None
    ):
        # Pageable destination: the call returns only once the copy is done.
        _flush(handle)
        if _sticky() is not None:
            return (_sticky(),)  # type: ignore[return-value]
        ctypes.memmove(destination, source, nbytes)
    else:
        queue.append(lambda: ctypes.memmove(destination, source, nbytes))
    _stats["memcpy"] += 1
    return (cudaError_t.cudaSuccess,)


def cudaMemcpy(dst: Any, src: Any, count: Any, kind: Any) -> tuple[cudaError_t]:
    """Synchronous copy on the legacy default stream: waits for all earlier work."""
    _flush_all()
    result = cudaMemcpyAsync(dst, src, count, kind, 0)
    if result[0] == cudaError_t.cudaSuccess:
        _flush(0)
    return (_sticky() or result[0],)
