"""OpenVINO on CPU, in a precision chosen on purpose: FP32, BF16 or INT8.

OpenVINO's CPU plugin runs BF16 by itself on CPUs with AVX-512 BF16 or AMX
unless told otherwise, so the precision is always set
(``INFERENCE_PRECISION_HINT``) and read back from the compiled model: a route
that says FP32 is FP32.

- ``fp32``: the bundle's FP32 ONNX graph, FP32 arithmetic;
- ``bf16``: the same graph with BF16 arithmetic, only where the CPU has it
  natively (OpenVINO lists BF16 in the CPU's optimisation capabilities);
  elsewhere it would be emulated, slower than FP32, and is refused;
- ``int8``: the bundle's INT8 graph (OpenVINO IR quantised by NNCF, see
  :mod:`olvf.export.quantize`), whatever is not quantised (the heads, softmax,
  ensemble mean, class maps) in FP32.

The graph is compiled once with a dynamic batch: a static batch would compile
again for every crop count a study brings (seconds for INT8) for a few
per cent of speed (see docs/how-to/cpu-precision.md).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from olvf.errors import BackendError, BundleError
from olvf.runtime.bundle.files import Bundle
from olvf.runtime.runners.base import Runner, TensorSpec
from olvf.runtime.runners.cpu import cpu_kind, describe_kind
from olvf.runtime.runners.onnxruntime import default_threads

#: precision the runner computes in -> precision of the bundle graph it runs
RUN_PRECISIONS = {"fp32": "fp32", "bf16": "fp32", "int8": "int8"}
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # INT8 graphs: what is not quantised stays FP32


def import_openvino() -> ModuleType:
    """``import openvino`` without its usage telemetry.

    openvino's converter (imported by ``import openvino``) and NNCF import
    ``openvino_telemetry``, which writes an identifier into ``~/intel`` and
    sends usage statistics unless a consent file says no. olvf runs offline in
    hospitals and writes only where it is told: with the module hidden both
    fall back to their built-in no-op stubs.
    """
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


def optimization_capabilities(core: Any) -> set[str]:
    """What OpenVINO's CPU plugin says this CPU offers (``BF16``, ``INT8``, ...): the one place olvf asks, so
    that tests can stand in another kind of CPU and run both sides of every CPU-dependent choice on one machine."""
    return set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def bf16_unavailable(core: Any) -> str | None:
    """Why this CPU cannot run BF16 natively, or None when it can."""
    capabilities = optimization_capabilities(core)
    if "BF16" in capabilities:
        return None
    return (
        f"this CPU, {describe_kind(cpu_kind())}, has no native BF16 arithmetic (AVX-512 BF16 or AMX; OpenVINO "
        f"lists {', '.join(sorted(capabilities))}), so BF16 would be emulated and slower than FP32; "
        "use precision fp32, or int8 where the bundle has an INT8 graph"
    )


class OpenVinoRunner(Runner):
    name = "openvino"
    computed_precisions: ClassVar[dict[str, str]] = {"bf16": "fp32"}

    def __init__(
        self,
        model_path: Path,
        *,
        precision: str = "fp32",
        weights_path: Path | None = None,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        if device != "cpu":
            raise BackendError(f"openvino device {device!r}: olvf runs OpenVINO on the CPU only (device='cpu')")
        if precision not in RUN_PRECISIONS:
            raise BackendError(
                f"openvino precision {precision!r}: choose fp32, bf16 or int8 (the FP16 graph is for GPUs)"
            )
        self.model_path = Path(model_path)
        self.weights_path = weights_path
        self.precision: str = precision
        self.threads = threads or default_threads()
        self._compiled: Any = None
        self._request: Any = None
        self._names: list[str] = []

    @classmethod
    def check_precision(cls, precision: str | None) -> None:
        if precision is not None and precision not in RUN_PRECISIONS:
            raise BackendError(
                f"openvino precision {precision!r}: choose fp32, bf16 or int8 (the FP16 graph is for GPUs)"
            )

    @classmethod
    def from_bundle(cls, bundle: Bundle, role: str, precision: str | None = None, **options: Any) -> OpenVinoRunner:
        cls.check_precision(precision)
        run = precision or "fp32"
        graph = bundle.manifest.graph(role, RUN_PRECISIONS[run])
        weights = bundle.file(graph.weights) if graph.weights else None
        return cls(bundle.file(graph.file), precision=run, weights_path=weights, **options)

    def load_impl(self) -> list[TensorSpec]:
        try:
            ov = import_openvino()
        except ImportError as exc:  # the module imports without openvino; the backend needs it now
            raise BackendError(f"OpenVINO is not installed ({exc.name or exc}); pip install 'olvf[openvino]'") from None
        core = ov.Core()
        if self.precision == "bf16":
            reason = bf16_unavailable(core)
            if reason is not None:
                raise BackendError(f"openvino bf16: {reason}")
        try:
            model = core.read_model(str(self.model_path), str(self.weights_path) if self.weights_path else None)
        except Exception as exc:  # OpenVINO raises untyped RuntimeErrors for unreadable graphs
            raise BundleError(
                f"{self.model_path} could not be read by OpenVINO ({_first_line(exc)}); re-export the bundle"
            ) from None
        config = {
            "INFERENCE_PRECISION_HINT": _HINTS[self.precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": self.threads,
        }
        try:
            compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise BackendError(f"OpenVINO could not compile {self.model_path.name} ({_first_line(exc)})") from None
        ran = compiled.get_property("INFERENCE_PRECISION_HINT")
        if ran != getattr(ov.Type, _HINTS[self.precision]):
            raise BackendError(
                f"OpenVINO compiled {self.model_path.name} for {ran} arithmetic, not the {self.precision} asked; "
                "report this with the OpenVINO version"
            )
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._names = [port.get_any_name() for port in compiled.outputs]
        specs = []
        for port in compiled.inputs:
            element = port.get_element_type()
            if element != ov.Type.f32:
                raise BundleError(f"{self.model_path}: input {port.get_any_name()} has unsupported type {element}")
            shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
            specs.append(TensorSpec(port.get_any_name(), shape, np.dtype(np.float32)))
        return specs

    def run_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # share_outputs=False: the request reuses its output buffers at the next call, results must not.
        result = self._request.infer(dict(feeds), share_inputs=True, share_outputs=False)
        return {name: result[port] for name, port in zip(self._names, self._compiled.outputs)}

    def close_impl(self) -> None:
        self._request = None
        self._compiled = None

    @property
    def label(self) -> str:
        return f"openvino ({self.model_path.name} on cpu, {self.precision})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
