"""ONNX Runtime: the default backend (CPU), with its CUDA and TensorRT providers where installed.

The TensorRT provider gets what it needs not to rebuild engines behind the
user's back: explicit profile shapes (else it rebuilds whenever a batch size
leaves the range it has seen) and engine and timing caches kept in the
bundle folder (``ORT_TRT_CACHE``), so the minutes of building are paid once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olvf.errors import BackendError, BundleError
from olvf.runtime.bundle.files import Bundle
from olvf.runtime.runners.base import Runner, TensorSpec
from olvf.runtime.runners.cpu import usable_cores
from olvf.runtime.runners.tensorrt.profiles import TYPICAL_BATCH, profile_shapes

# What each device asks ONNX Runtime for, best first; CPU is always the fallback.
_PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
ORT_TRT_CACHE = "onnxruntime-tensorrt-cache"
_DTYPES: dict[str, np.dtype[Any]] = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16)}


def default_threads() -> int:
    """Cores this process may use: intra-op threads beyond that only contend."""
    return usable_cores()


@dataclass(frozen=True)
class TensorRTProviderSettings:
    """ONNX Runtime TensorRT provider: where its caches live and the one profile it builds for."""

    cache_dir: Path
    input_name: str
    profile: dict[str, list[int]]  # min / opt / max input shapes
    prefix: str = "olvf"
    fp16: bool = True


def _shape_option(name: str, shape: Sequence[int]) -> str:
    return f"{name}:{'x'.join(str(int(d)) for d in shape)}"


def provider_list(
    device: str, device_id: int = 0, tensorrt: TensorRTProviderSettings | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The providers and their options for ``device``, best first, CPU last."""
    cuda = {"device_id": device_id, "arena_extend_strategy": "kSameAsRequested"}  # no power-of-two overshoot
    providers: list[tuple[str, dict[str, Any]]] = []
    if device == "tensorrt":
        if tensorrt is None:
            raise BackendError("onnxruntime device 'tensorrt' needs a bundle (load it with olvf.load)")
        cache = str(tensorrt.cache_dir)
        providers.append(
            (
                "TensorrtExecutionProvider",
                {
                    "device_id": device_id,
                    "trt_fp16_enable": tensorrt.fp16,
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": cache,
                    "trt_engine_cache_prefix": tensorrt.prefix,
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": cache,
                    "trt_profile_min_shapes": _shape_option(tensorrt.input_name, tensorrt.profile["min"]),
                    "trt_profile_opt_shapes": _shape_option(tensorrt.input_name, tensorrt.profile["opt"]),
                    "trt_profile_max_shapes": _shape_option(tensorrt.input_name, tensorrt.profile["max"]),
                },
            )
        )
    if device in ("cuda", "tensorrt"):
        providers.append(("CUDAExecutionProvider", cuda))
    providers.append(("CPUExecutionProvider", {}))
    return providers


def _prepare_cache(folder: Path) -> None:
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise BundleError(
            f"cannot create ONNX Runtime's TensorRT cache {folder} ({exc.strerror}); "
            "give olvf write access to the bundle folder"
        ) from None


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        device_id: int = 0,
        tensorrt: TensorRTProviderSettings | None = None,
    ) -> None:
        super().__init__()
        if device not in _PROVIDERS:
            raise BackendError(f"onnxruntime device {device!r} unknown; choose one of: {', '.join(_PROVIDERS)}")
        self.model_path = Path(model_path)
        self.requested_device = device
        self.threads = threads or default_threads()
        self.device_id = device_id
        self.tensorrt = tensorrt
        self._session: Any = None
        self._output_names: Sequence[str] = ()

    @classmethod
    def from_bundle(cls, bundle: Bundle, role: str, precision: str | None = None, **options: Any) -> OnnxRuntimeRunner:
        graph = bundle.manifest.graph(role, precision)
        if graph.format != "onnx":
            raise BackendError(
                f"{graph.file} is an OpenVINO graph ({graph.precision}); run it with backend openvino "
                "(pip install 'olvf[openvino]')"
            )
        if options.get("device") == "tensorrt" and "tensorrt" not in options:
            options["tensorrt"] = TensorRTProviderSettings(
                cache_dir=bundle.path / ORT_TRT_CACHE,
                input_name=graph.input_name,
                profile=profile_shapes(graph, TYPICAL_BATCH.get(role, 1)),
                prefix=Path(graph.file).stem,
            )
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
        if self.tensorrt is not None:
            _prepare_cache(self.tensorrt.cache_dir)
        providers = provider_list(self.requested_device, self.device_id, self.tensorrt)
        try:
            self._session = ort.InferenceSession(
                str(self.model_path), sess_options=options, providers=[p for p in providers if p[0] in available]
            )
        except Exception as exc:  # ORT raises its own untyped errors for bad files and failing providers
            if self.requested_device != "cpu":
                raise BackendError(
                    f"onnxruntime could not start {wanted[0]} for {self.model_path.name} "
                    f"({str(exc).splitlines()[0]}); check nvidia-smi and the CUDA libraries onnxruntime-gpu needs"
                ) from None
            raise BundleError(
                f"{self.model_path} could not be loaded by ONNX Runtime ({str(exc).splitlines()[0]}); "
                "re-export the bundle"
            ) from None
        if self._session.get_providers()[0] != wanted[0]:
            # ORT falls back to CPU with only a warning when CUDA or cuDNN libraries are missing.
            ran = self._session.get_providers()[0]
            self._session = None
            raise BackendError(
                f"onnxruntime has {wanted[0]} but it could not start here and would have run on {ran}; "
                "check the CUDA and cuDNN versions onnxruntime-gpu needs, and nvidia-smi"
            )
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

    @property
    def label(self) -> str:
        return f"onnxruntime ({self.model_path.name} on {self.device})"

    def close_impl(self) -> None:
        self._session = None

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers()) if self._session is not None else []

    @property
    def device(self) -> str:
        first = self.providers[0] if self.providers else "CPUExecutionProvider"
        return "cpu" if first == "CPUExecutionProvider" else f"cuda:{self.device_id}"
