"""Dims, host memory and pybind11-style trampolines, as the bindings have them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tensorrt._core import DataType

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
