"""``--backend auto``: the fastest backend this machine and bundle can run, and why.

Order: TensorRT engines built on this machine, then ONNX Runtime on the GPU
(CUDA provider), then ONNX Runtime on CPU, which always remains. Each
candidate that cannot run leaves a one-line reason, and the report carries
them, so "why is this workstation on CPU?" is answered by the report itself.
ONNX Runtime's TensorRT provider is not tried: its first run builds engines
for minutes, which an automatic choice must not spring on a user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from olvf.runtime.manifest import Manifest


@dataclass(frozen=True)
class Candidate:
    label: str
    backend: str
    precision: str | None
    options: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None  # why it is not even tried


def _has_graph(manifest: Manifest, precision: str) -> bool:
    role = "ensemble" if manifest.has("ensemble") else "detector"
    return any(g.role == role and g.precision == precision for g in manifest.graphs)


def ort_gpu_missing() -> str | None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return None
    return "no CUDA provider in this onnxruntime (for onnxruntime-gpu: pip install 'olvf[gpu]')"


def auto_candidates(
    manifest: Manifest, precision: str | None, *, device: int | str | None = None, threads: int | None = None
) -> list[Candidate]:
    """What ``auto`` tries, best first; ``device`` may pin a GPU index, or ``"cpu"``."""
    cpu_only = device == "cpu"
    gpu = device if isinstance(device, int) else 0
    not_on_cpu = "--device cpu was asked" if cpu_only else None
    gpu_precision = precision or ("fp16" if _has_graph(manifest, "fp16") else None)
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
            gpu_precision,
            {"device": "cuda", "device_id": gpu},
            skip=not_on_cpu or ort_gpu_missing(),
        ),
        Candidate("ONNX Runtime on CPU", "onnxruntime", precision, cpu_options),
    ]
