"""Which engine belongs to which machine and graph: checked before TensorRT ever sees the file.

An engine runs only on the TensorRT version and the GPU (compute capability)
that built it, and only for the ONNX graph it was built from. Each of these
is recorded in the manifest at build time and compared here *before* the
engine is deserialised, so a copied or stale engine gets one line saying
what differs and the command that rebuilds it, instead of TensorRT's own
error.
"""

from __future__ import annotations

import re
from pathlib import Path

from olvf.errors import BundleError
from olvf.runtime.bundle.files import Bundle
from olvf.runtime.bundle.manifest import EngineSpec
from olvf.runtime.runners.tensorrt.device import DeviceFacts


def same_machine(spec: EngineSpec, here: DeviceFacts) -> bool:
    return (spec.tensorrt_version, spec.gpu_name, spec.compute_capability) == (
        here.tensorrt_version,
        here.gpu_name,
        here.compute_capability,
    )


def rebuild_command(bundle: Path) -> str:
    return f"olvf-infer --rebuild-engines --bundle {bundle}"


def check_engine(spec: EngineSpec, here: DeviceFacts, bundle: Bundle) -> None:
    """Refuse an engine built elsewhere or from another graph, naming what differs and the fix."""
    source_hash = bundle.manifest.files.get(spec.source_graph)
    if source_hash != spec.source_sha256:
        raise BundleError(
            f"engine {spec.file} is stale: it was built from another {spec.source_graph} than the bundle's; "
            f"rebuild it with {rebuild_command(bundle.path)}"
        )
    differences = []
    if spec.tensorrt_version != here.tensorrt_version:
        differences.append(f"TensorRT {spec.tensorrt_version}, here {here.tensorrt_version}")
    if spec.compute_capability != here.compute_capability or spec.gpu_name != here.gpu_name:
        differences.append(
            f"GPU {spec.gpu_name} (compute {spec.compute_capability}), "
            f"here {here.gpu_name} (compute {here.compute_capability})"
        )
    if differences:
        raise BundleError(
            f"engine {spec.file} was built for {'; '.join(differences)}; engines do not move between "
            f"TensorRT versions or GPUs: rebuild it here with {rebuild_command(bundle.path)}"
        )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def machine_tag(here: DeviceFacts) -> str:
    """``orin-sm87``: the GPU part of engine and timing-cache file names."""
    return f"{_slug(here.gpu_name)}-sm{here.compute_capability.replace('.', '')}"
