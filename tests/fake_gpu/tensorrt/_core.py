"""The fake's foundations: its version, the recorded API surface and the enums made from it, and the
configuration it reads from the environment."""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Iterable
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
        (r for r in records if r["version"].split(".")[0] == str(_MAJOR)),
        key=lambda r: _numeric(r["version"]),
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
