"""``--backend auto``: the fastest backend this machine and bundle can run, and why.

Order: TensorRT engines built on this machine, then ONNX Runtime on the GPU
(CUDA provider), then the fastest reduced-precision CPU route (OpenVINO INT8
or BF16) that the bundle records as verified on this kind of CPU
(:mod:`olvf.runtime.runners.verified_routes`), then ONNX Runtime on CPU (FP32), which always
remains. Each
candidate that cannot run leaves a one-line reason, and the report carries
them, so "why is this workstation on CPU?" is answered by the report itself.
ONNX Runtime's TensorRT provider is not tried: its first run builds engines
for minutes, which an automatic choice must not spring on a user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from olvf.errors import BackendError
from olvf.runtime.bundle.manifest import Manifest, VerifiedRoute
from olvf.runtime.runners.verified_routes import ROUTES, describe, is_current, usable_routes


@dataclass(frozen=True)
class Candidate:
    label: str
    backend: str
    precision: str | None
    options: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None  # why it is not even tried
    verification: VerifiedRoute | None = None  # for a reduced-precision route: the record that lets it run


GPU_DEVICES = ("cuda", "tensorrt")


def gpu_precision(manifest: Manifest, precision: str | None) -> str | None:
    """On a GPU, the FP16 graph unless another was asked for (FP32 where the bundle has no FP16)."""
    if precision is not None:
        return precision
    role = "ensemble" if manifest.has("ensemble") else "detector"
    return "fp16" if any(g.role == role and g.precision == "fp16" for g in manifest.graphs) else None


def ort_gpu_missing() -> str | None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return None
    return "no CUDA provider in this onnxruntime (for onnxruntime-gpu: pip install 'olvf[gpu]')"


def auto_candidates(
    manifest: Manifest, precision: str | None, *, device: int | str | None = None, threads: int | None = None
) -> list[Candidate]:
    """What ``auto`` tries, best first; ``device`` may pin a GPU index, or ``"cpu"``.

    (A provider name, ``"cuda"`` or ``"tensorrt"``, is not auto: ``olvf.load`` hands it to ONNX Runtime.)
    """
    if not (device is None or isinstance(device, int) or device == "cpu"):
        raise BackendError(f"device {device!r} unknown; use cpu, cuda, tensorrt or a GPU index (0, 1, ...)")
    cpu_only = device == "cpu"
    gpu = device if isinstance(device, int) else 0
    not_on_cpu = "--device cpu was asked" if cpu_only else None
    cpu_options: dict[str, Any] = {"device": "cpu"} | ({"threads": threads} if threads else {})
    return [
        Candidate(
            "TensorRT",
            "tensorrt",
            None,
            {"device": gpu},
            skip=not_on_cpu or ("its engines are FP16 and --precision fp32 was asked" if precision == "fp32" else None),
        ),
        Candidate(
            "ONNX Runtime on the GPU",
            "onnxruntime",
            gpu_precision(manifest, precision),
            {"device": "cuda", "device_id": gpu},
            skip=not_on_cpu or ort_gpu_missing(),
        ),
        *cpu_routes(manifest, precision, cpu_options),
        Candidate("ONNX Runtime on CPU", "onnxruntime", precision, cpu_options),
    ]


def cpu_routes(manifest: Manifest, precision: str | None, options: dict[str, Any]) -> list[Candidate]:
    """The verified reduced-precision CPU routes, fastest first; or one skipped entry saying why there is none."""
    label = "reduced precision on CPU"
    if precision is not None:
        return [Candidate(label, "openvino", None, skip=f"--precision {precision} was asked")]
    if not manifest.has("ensemble"):
        return []
    usable = usable_routes(manifest)
    if usable:
        return [
            Candidate(f"{ROUTES[r.route].label} (verified)", r.backend, r.precision, dict(options), verification=r)
            for r in usable
        ]
    if not manifest.verified_routes:
        why = "none verified for this bundle (olvf-validate checks a route on a labelled set and records it)"
    else:
        reasons = {f"{r.route}: {is_current(r, manifest)}" for r in manifest.verified_routes}
        why = "none verified for this CPU (" + "; ".join(sorted(reasons)) + ")"
    return [Candidate(label, "openvino", None, skip=why)]


@dataclass(frozen=True)
class Selection:
    """Which backend was asked for, which runs, and why the ones before it did not (label, reason).

    ``rule``: what decided when it was not auto's order (a named backend, or a
    ``--device`` that names an ONNX Runtime provider).
    """

    requested: str
    chosen: str
    passed_over: tuple[tuple[str, str], ...] = ()
    rule: str | None = None
    verification: VerifiedRoute | None = None

    @property
    def verified(self) -> dict[str, Any] | None:
        """A reduced-precision route's verification, for reports: what it was checked on, where, its figures."""
        if self.verification is None:
            return None
        r = self.verification
        return {
            "route": r.route,
            "summary": describe(r),
            "evidence": r.evidence,
            "cpu": r.cpu,
            "verified": r.verified,
            "figures": r.figures,
        }

    @property
    def why(self) -> str:
        if self.rule is not None:
            return self.rule
        if not self.passed_over:
            return f"--backend {self.requested}" if self.requested != "auto" else "--backend auto: first choice"
        return "--backend auto: " + "; ".join(f"{label}: {reason}" for label, reason in self.passed_over)

    @property
    def brief(self) -> str:
        """``why`` with each reason cut to its first clause, for a summary line (reports keep it whole)."""
        if not self.passed_over:
            return self.why
        return "auto: " + ", ".join(f"{label}: {_first_clause(reason)}" for label, reason in self.passed_over)


def _first_clause(text: str) -> str:
    cuts = [i for i in (text.find(": "), text.find("; "), text.find(" (")) if i > 0]
    return text[: min(cuts)] if cuts else text
