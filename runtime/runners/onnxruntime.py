"""ONNX Runtime: the default backend (CPU), with its CUDA and TensorRT providers where installed."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from olvf.errors import BackendError, BundleError
from olvf.runtime.bundle import Bundle
from olvf.runtime.runners.base import Runner, TensorSpec

# What each device asks ONNX Runtime for, best first; CPU is always the fallback.
_PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
_DTYPES = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16)}


def default_threads() -> int:
    """Cores this process may use: intra-op threads beyond that only contend."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, model_path: Path, *, device: str = "cpu", threads: int | None = None) -> None:
        super().__init__()
        if device not in _PROVIDERS:
            raise BackendError(f"onnxruntime device {device!r} unknown; choose one of: {', '.join(_PROVIDERS)}")
        self.model_path = Path(model_path)
        self.requested_device = device
        self.threads = threads or default_threads()
        self._session: Any = None
        self._output_names: Sequence[str] = ()

    @classmethod
    def from_bundle(cls, bundle: Bundle, role: str, precision: str | None = None, **options: Any) -> OnnxRuntimeRunner:
        graph = bundle.manifest.graph(role, precision)
        return cls(bundle.file(graph.file), **options)

    def load_impl(self) -> list[TensorSpec]:
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        wanted = _PROVIDERS[self.requested_device]
        if wanted[0] not in available:
            raise BackendError(
                f"onnxruntime has no {wanted[0]} here (available: {', '.join(sorted(available))}); "
                "install onnxruntime-gpu (pip install 'olvf[gpu]') on a machine with an NVIDIA GPU, "
                "or use device='cpu'"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT's warnings are not for clinicians
        # Idle workers would spin for a while after each run and take the few cores of an ER box
        # from decoding, cropping and Grad-CAM; measured faster end to end on 2 cores without it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(self.model_path), sess_options=options, providers=[p for p in wanted if p in available]
            )
        except Exception as exc:  # ORT raises its own untyped errors for bad files
            raise BundleError(
                f"{self.model_path} could not be loaded by ONNX Runtime ({str(exc).splitlines()[0]}); "
                "re-export the bundle"
            ) from None
        self._output_names = [o.name for o in self._session.get_outputs()]
        specs = []
        for node in self._session.get_inputs():
            if node.type not in _DTYPES:
                raise BundleError(f"{self.model_path}: input {node.name} has unsupported type {node.type}")
            shape = tuple(d if isinstance(d, int) else None for d in node.shape)
            specs.append(TensorSpec(node.name, shape, _DTYPES[node.type]))
        return specs

    def run_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._session.run(self._output_names, dict(feeds))
        return dict(zip(self._output_names, outputs))

    def close_impl(self) -> None:
        self._session = None

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers()) if self._session is not None else []

    @property
    def device(self) -> str:
        first = self.providers[0] if self.providers else "CPUExecutionProvider"
        return "cpu" if first == "CPUExecutionProvider" else "cuda:0"
