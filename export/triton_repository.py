"""A bundle as a Triton Inference Server model repository: the detector and the fused ensemble, two models.

::

    REPO/
      olvf_detector/config.pbtxt      max_batch_size, inputs/outputs from the graph, dynamic batching with
      olvf_detector/1/model.onnx      two priority levels (1: ER, 2: routine), the bundle's identity as
      olvf_ensemble/config.pbtxt      parameters (olvf_graph_sha256, olvf_manifest_sha256, olvf_role)
      olvf_ensemble/1/model.onnx
      olvf_ensemble/1/<sm>.plan       TensorRT engines where the bundle has them (cc_model_filenames)
      manifest.json                   the bundle's manifest, as it is

The configs are for Triton's ONNX Runtime backend; a TensorRT plan is named
per compute capability (``cc_model_filenames``), which that backend's
TensorRT execution provider does not read: a site that serves the plans runs
them with ``platform: "tensorrt_plan"`` (docs/how-to/triton.md). No torch:
the graphs' inputs and outputs are read with ONNX Runtime, and the ONNX
files are hard-linked where the file system allows, copied otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olvf.atomic import check_replaceable
from olvf.errors import UsageError
from olvf.runtime.bundle.files import Bundle, open_bundle
from olvf.runtime.runners.triton import MODEL_NAMES  # the names the triton backend asks for

ER_PRIORITY, ROUTINE_PRIORITY = 1, 2  # Triton: 1 is the highest of priority_levels
PREFERRED_BATCH = {"detector": (4, 8), "ensemble": (8, 16, 32)}
QUEUE_DELAY_US = 2000  # how long a request may wait for others to join its batch
_TRITON_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
    "tensor(int64)": "TYPE_INT64",
    "tensor(int32)": "TYPE_INT32",
    "tensor(uint8)": "TYPE_UINT8",
}


@dataclass(frozen=True)
class TritonTensor:
    name: str
    data_type: str  # TYPE_FP32, ...
    dims: tuple[int, ...]  # without the batch axis; -1 for a dynamic one


def graph_tensors(path: Path) -> tuple[list[TritonTensor], list[TritonTensor]]:
    """Inputs and outputs of an ONNX graph as Triton declares them (the first axis is the batch)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # read, not run
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def tensors(args: Any) -> list[TritonTensor]:
        found = []
        for arg in args:
            if arg.type not in _TRITON_TYPES:
                raise UsageError(f"{path.name}: {arg.name} is {arg.type}, which olvf does not serve through Triton")
            dims = tuple(d if isinstance(d, int) else -1 for d in arg.shape[1:])
            found.append(TritonTensor(arg.name, _TRITON_TYPES[arg.type], dims))
        return found

    return tensors(session.get_inputs()), tensors(session.get_outputs())


def _tensor_block(kind: str, tensors: list[TritonTensor]) -> str:
    items = ",\n".join(
        f'  {{\n    name: "{t.name}"\n    data_type: {t.data_type}\n    dims: [ {", ".join(map(str, t.dims))} ]\n  }}'
        for t in tensors
    )
    return f"{kind} [\n{items}\n]\n"


def model_config(
    role: str,
    bundle: Bundle,
    graph_sha256: str,
    inputs: list[TritonTensor],
    outputs: list[TritonTensor],
    max_batch: int,
    plans: dict[str, str],
    instance_kind: str = "KIND_GPU",
) -> str:
    """``config.pbtxt`` for one role (protobuf text format of Triton's ModelConfig)."""
    preferred = [b for b in PREFERRED_BATCH[role] if b <= max_batch] or [max_batch]
    parameters = {
        "olvf_role": role,
        "olvf_graph_sha256": graph_sha256,
        "olvf_manifest_sha256": bundle.manifest_sha256,
        "olvf_demo": "true" if bundle.manifest.demo else "false",
    }
    text = f'name: "{MODEL_NAMES[role]}"\nbackend: "onnxruntime"\nmax_batch_size: {max_batch}\n'
    text += _tensor_block("input", inputs) + _tensor_block("output", outputs)
    text += (
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
        f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n"
        f"  priority_levels: 2\n  default_priority_level: {ROUTINE_PRIORITY}\n"
        "}\n"
        f"instance_group [\n  {{\n    count: 1\n    kind: {instance_kind}\n  }}\n]\n"
    )
    if plans:
        text += (
            "cc_model_filenames [\n"
            + ",\n".join(f'  {{\n    key: "{cc}"\n    value: "{name}"\n  }}' for cc, name in sorted(plans.items()))
            + "\n]\n"
        )
    for key, value in parameters.items():
        text += f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}\n'

    return text


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_triton_repository(bundle_dir: str | Path, out: str | Path, *, force: bool = False) -> Path:
    """Write ``out`` as a Triton model repository serving the bundle's FP32 ONNX graphs (and its engines)."""
    bundle = open_bundle(bundle_dir)
    target = Path(out)
    check_replaceable(target, force=force)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        for role in ("detector", "ensemble"):
            graph = bundle.manifest.graph(role, "fp32")
            model = staging / MODEL_NAMES[role]
            (model / "1").mkdir(parents=True)
            source = bundle.file(graph.file)
            _link_or_copy(source, model / "1" / "model.onnx")
            plans = {}
            for engine in bundle.manifest.engines or ():
                if engine.role == role and engine.compute_capability:
                    name = f"{engine.compute_capability}.plan"
                    _link_or_copy(bundle.file(engine.file), model / "1" / name)
                    plans[engine.compute_capability] = name
            inputs, outputs = graph_tensors(source)
            sha = bundle.manifest.files[graph.file]
            config = model_config(role, bundle, sha, inputs, outputs, graph.max_batch or 1, plans)
            (model / "config.pbtxt").write_text(config, encoding="utf-8")
        shutil.copyfile(bundle.path / "manifest.json", staging / "manifest.json")
        (staging / "README.txt").write_text(
            "A Triton Inference Server model repository written by olvf-export --triton from the bundle whose\n"
            f"manifest is here (sha256 {bundle.manifest_sha256}). Serve it with\n"
            "  tritonserver --model-repository THIS_FOLDER\n"
            "and run olvf with --backend triton --triton-url HOST:8001. See olvf's docs: how-to/triton.md.\n",
            encoding="utf-8",
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def repository_summary(path: Path) -> str:
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    names = ", ".join(MODEL_NAMES.values())
    return f"Triton model repository written to {path}: {names} ({manifest.get('kind', 'bundle')})"
