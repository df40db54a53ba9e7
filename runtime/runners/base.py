"""The runner protocol every inference backend implements.

A runner owns one compiled graph (an ONNX Runtime session, a TensorRT engine,
a PyTorch module). The public methods check state and inputs once, here;
backends override only the ``*_impl`` methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from olvf.errors import BackendError, InputError, OlvfError

if TYPE_CHECKING:
    from olvf.runtime.bundle.files import Bundle

R = TypeVar("R", bound="Runner")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (``None`` for a dynamic axis) and dtype of a graph input."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


class Runner(ABC):
    """Load a graph, run it on numpy arrays, release it."""

    #: registry name, e.g. "onnxruntime"
    name: str = ""
    #: largest batch one call may carry (a TensorRT profile's maximum); None: the graph's own limit
    max_batch: int | None = None
    #: precision the graph runs in when the backend decides it (TensorRT engines); None: the graph's
    precision: str | None = None
    #: precisions the backend computes in that no graph has, and the graph each runs
    #: (OpenVINO's BF16 computes the FP32 graph in BF16)
    computed_precisions: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        self._active = False
        self._inputs: tuple[TensorSpec, ...] = ()

    @classmethod
    @abstractmethod
    def from_bundle(cls: type[R], bundle: Bundle, role: str, precision: str | None = None, **options: Any) -> R:
        """The runner for ``role`` ("detector" or "ensemble") of an opened bundle, not yet loaded.

        ``precision`` picks the graph where the backend runs graphs; backends
        that cannot serve a role raise :class:`BackendError` saying so.
        """

    @classmethod
    def check_precision(cls, precision: str | None) -> None:
        """Refuse a precision the backend cannot compute in, before any graph is looked for."""

    # -- public template -------------------------------------------------
    def load(self) -> Runner:
        if not self._active:
            self._inputs = tuple(self.load_impl())
            self._active = True
        return self

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._active:
            raise BackendError(f"{self.name} runner used before load() or after close()")
        expected = {spec.name: spec for spec in self._inputs}
        if set(feeds) != set(expected):
            raise InputError(f"graph inputs are {sorted(expected)}, got {sorted(feeds)}")
        for name, array in feeds.items():
            spec = expected[name]
            if array.dtype != spec.dtype:
                raise InputError(f"input {name!r} must be {spec.dtype}, got {array.dtype}")
            if array.ndim != len(spec.shape) or any(
                want is not None and want != got for want, got in zip(spec.shape, array.shape)
            ):
                shown = tuple("N" if d is None else d for d in spec.shape)
                raise InputError(f"input {name!r} must have shape {shown}, got {array.shape}")
        try:
            return self.run_impl(feeds)
        except OlvfError:
            raise
        except Exception as exc:  # a backend's own failure (out of memory, a lost GPU) stops the run, said once
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(f"{self.label} failed: {first[:300]}") from exc

    def close(self) -> None:
        if self._active:
            self.close_impl()
            self._active = False

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def device(self) -> str:
        """Where the graph runs, for reports (e.g. "cpu", "cuda:0")."""
        return "cpu"

    @property
    def label(self) -> str:
        """The backend and what it runs, for messages."""
        return f"{self.name} on {self.device}"

    def __enter__(self) -> Runner:
        return self.load()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- backend part ----------------------------------------------------
    @abstractmethod
    def load_impl(self) -> list[TensorSpec]:
        """Build or deserialise the graph; return its input specs."""

    @abstractmethod
    def run_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on validated inputs; return every graph output by name."""

    def close_impl(self) -> None:
        """Release sessions, buffers, streams."""
