"""Switch a test onto the fake TensorRT and cuda-python in ``tests/fake_gpu`` (test doubles, never production).

    from fake_gpu_fixture import use_fake_gpu

    def test_something(monkeypatch):
        use_fake_gpu(monkeypatch, version="11.0.0")
        import tensorrt as trt  # the fake, in this process and in subprocesses started from here

Everything is undone when the test ends: environment, ``sys.path`` and the
``tensorrt`` / ``cuda`` modules (the real cuda-python, if it had been imported,
is restored; the fakes are dropped).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

FAKE_GPU_DIR = Path(__file__).resolve().parent / "fake_gpu"

# The modules the fakes provide: always removed after the test, even if not imported before it.
_FAKE_TENSORRT = ("_core", "_types", "_logging", "_onnx", "_network", "_builder", "_inspector", "_engine")
_FAKE_MODULES = (
    "tensorrt",
    *(f"tensorrt.{part}" for part in _FAKE_TENSORRT),
    "cuda",
    "cuda.bindings",
    "cuda.bindings.runtime",
    "cuda.bindings.utils",
)
_PREFIXES = ("tensorrt", "cuda")


def _shadowed(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in _PREFIXES)


def use_fake_gpu(
    monkeypatch: pytest.MonkeyPatch,
    *,
    version: str = "10.3.0",
    gpu: str = "Fake GPU",
    capability: tuple[int, int] = (8, 9),
    noise: float = 0.0,
    count: int = 1,
    layer_style: str | None = None,
    memory: int = 8 * 1024**3,
    cuda_python: str = "12.9.10",
    driver: str = "ok",
    cuda_init_error: int = 0,
    tensorrt_cuda_error: int = 0,
) -> None:
    """Make ``import tensorrt`` / ``from cuda.bindings import runtime`` give the fakes, here and in subprocesses.

    ``count=0``: a machine without a GPU. ``layer_style``: how engine information spells precisions
    (TensorRT 10: "cask" or "kgen"; 11: "documented" or "opaque"; default per version). ``memory``: bytes
    of GPU memory. ``cuda_python``: the cuda-python version to behave like ("12.9.10" or "12.6.2").
    ``driver="missing"``: libcuda.so.1 cannot be loaded. ``cuda_init_error``: a CUDA error every device
    call returns (100 or 801: a Jetson user who cannot open /dev/nvmap). ``tensorrt_cuda_error``: CUDA
    works for cuda-python but TensorRT cannot start it (35: a driver too old for TensorRT), so
    ``trt.Builder`` / ``trt.Runtime`` raise TypeError as the real bindings do.
    """
    settings = {
        "OLVF_FAKE_TRT_VERSION": version,
        "OLVF_FAKE_GPU_NAME": gpu,
        "OLVF_FAKE_GPU_CC": f"{capability[0]}.{capability[1]}",
        "OLVF_FAKE_TRT_NOISE": repr(float(noise)),
        "OLVF_FAKE_GPU_COUNT": str(int(count)),
        "OLVF_FAKE_GPU_MEMORY": str(int(memory)),
        "OLVF_FAKE_CUDA_PYTHON": cuda_python,
        "OLVF_FAKE_CUDA_DRIVER": driver,
        "OLVF_FAKE_CUDA_INIT_ERROR": str(int(cuda_init_error)),
        "OLVF_FAKE_TRT_CUDA_ERROR": str(int(tensorrt_cuda_error)),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    if layer_style is None:
        monkeypatch.delenv("OLVF_FAKE_TRT_LAYER_STYLE", raising=False)
    else:
        monkeypatch.setenv("OLVF_FAKE_TRT_LAYER_STYLE", layer_style)
    monkeypatch.setenv("PYTHONPATH", str(FAKE_GPU_DIR), prepend=os.pathsep)
    monkeypatch.syspath_prepend(str(FAKE_GPU_DIR))
    for name in sorted(set(_FAKE_MODULES) | {n for n in sys.modules if _shadowed(n)}):
        if name not in sys.modules:
            # Record "absent" so that whatever the test imports under this name is removed afterwards.
            monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
        monkeypatch.delitem(sys.modules, name, raising=False)


def real_tensorrt_missing() -> str | None:
    """Why the real TensorRT cannot run here (None where TensorRT and a GPU exist): the reason tests skip with."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed"
    from olvf.runtime.runners.tensorrt import tensorrt_unavailable

    return tensorrt_unavailable()
