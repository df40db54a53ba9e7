"""Stage 4, the runners: backends chosen by name, behind one protocol (``base.Runner``).

Also here: which backend "auto" chooses (``selection``), the routes a bundle verified per kind of CPU
(``verified_routes``) and what this CPU is (``cpu``).

Each entry names the module that holds the runner, so that asking for one
backend never imports another's heavy dependencies.
"""

from __future__ import annotations

import importlib

from olvf.errors import BackendError
from olvf.runtime.runners.base import Runner, TensorSpec

# name -> (module, class, what to install when its import fails)
_BACKENDS: dict[str, tuple[str, str, str]] = {
    "onnxruntime": (
        "olvf.runtime.runners.onnxruntime",
        "OnnxRuntimeRunner",
        "pip install onnxruntime (or onnxruntime-gpu, via pip install 'olvf[gpu]')",
    ),
    "openvino": (
        "olvf.runtime.runners.openvino",
        "OpenVinoRunner",
        "pip install 'olvf[openvino]' (OpenVINO, for FP32, BF16 and INT8 on CPU)",
    ),
    "tensorrt": (
        "olvf.runtime.runners.tensorrt",
        "TensorRTRunner",
        "install TensorRT and cuda-python: pip install 'olvf[tensorrt]' (on Jetson, TensorRT comes with JetPack)",
    ),
    "triton": (
        "olvf.runtime.runners.triton",
        "TritonRunner",
        "pip install 'olvf[triton]' (tritonclient, to use a Triton Inference Server)",
    ),
    "torch": (
        "olvf.export.torch_runner",
        "TorchRunner",
        "pip install 'olvf[export]' (PyTorch is the reference backend, not part of the lean runtime)",
    ),
}


def backend_names() -> tuple[str, ...]:
    return tuple(_BACKENDS)


def register_backend(name: str, module: str, cls: str, install_hint: str) -> None:
    """Add a backend; registering an existing name is refused."""
    if name in _BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    _BACKENDS[name] = (module, cls, install_hint)


def runner_class(name: str) -> type[Runner]:
    """The runner class registered as ``name``, imported now."""
    try:
        module_name, cls_name, hint = _BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(_BACKENDS)}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"backend {name!r} is not installed ({exc.name or exc}); {hint}") from None
    cls = getattr(module, cls_name)
    if not (isinstance(cls, type) and issubclass(cls, Runner)):
        raise TypeError(f"backend {name!r}: {module_name}.{cls_name} is not a Runner")
    return cls


__all__ = ["Runner", "TensorSpec", "backend_names", "register_backend", "runner_class"]
