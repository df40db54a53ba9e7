"""Build TensorRT FP16 engines from a bundle's ONNX graphs, on the machine that will run them.

TensorRT 10 builds FP16 from the FP32 graph with the FP16 builder flag.
TensorRT 11 removed that flag: networks are strongly typed and precision comes
from the graph, so it builds from the bundle's FP16 graph (casts baked in). In
both cases the built engine is inspected and refused if no layer actually
runs in FP16 (exporters elsewhere silently built FP32 on TensorRT 11).

Not run in this project's CI (no GPU, no TensorRT): the choices below that do
not need TensorRT (``build_plan``, ``profile_shapes``) are tested; building is
verified on the target by ``olvf-export --verify``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olvf.errors import BackendError, ParityError
from olvf.runtime.manifest import GraphSpec

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildPlan:
    """How a TensorRT version is asked for FP16."""

    strongly_typed: bool
    fp16_flag: bool
    graph_precision: str


def build_plan(tensorrt_version: str) -> BuildPlan:
    major = int(tensorrt_version.split(".")[0])
    if major < 10:
        raise BackendError(f"TensorRT {tensorrt_version} is too old; olvf needs TensorRT 10 or 11")
    if major == 10:
        return BuildPlan(strongly_typed=False, fp16_flag=True, graph_precision="fp32")
    return BuildPlan(strongly_typed=True, fp16_flag=False, graph_precision="fp16")


def profile_shapes(graph: GraphSpec, typical: int) -> dict[str, list[int]]:
    """One optimisation profile: batch 1, a typical study, the graph's maximum."""
    tail = [int(d) for d in graph.input_shape[1:]]
    top = max(1, graph.max_batch)
    opt = min(max(1, typical), top)
    return {"min": [1, *tail], "opt": [opt, *tail], "max": [top, *tail]}


def _progress_monitor(trt: Any, progress: Progress) -> Any:
    """Phases of a build, printed as they start: a Jetson build can take many minutes."""

    class Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.started = time.monotonic()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                progress(f"      {time.monotonic() - self.started:5.0f} s  {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            pass

    return Monitor()


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    graph: GraphSpec,
    *,
    typical_batch: int,
    timing_cache: Path,
    progress: Progress,
) -> dict[str, Any]:
    """Build and serialise an FP16 engine; return the facts the manifest records about it."""
    import tensorrt as trt

    plan = build_plan(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan.strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path.name}: {errors[:300]}")
    config = builder.create_builder_config()
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # lets us check the layers' precision
    config.progress_monitor = _progress_monitor(trt, progress)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    shapes = profile_shapes(graph, typical_batch)
    profile = builder.create_optimization_profile()
    profile.set_shape(graph.input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT could not build an engine from {onnx_path.name}; see the messages above")
    engine_path.write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))

    engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(serialized))
    half_layers = count_half_layers(engine, trt)
    if half_layers == 0:
        raise ParityError(
            f"TensorRT built {engine_path.name} without a single FP16 layer (plan {plan}); "
            "refusing an engine that is FP32 in disguise"
        )
    return {"profile": shapes, "half_layers": half_layers, "plan": vars(plan)}


def count_half_layers(engine: Any, trt: Any) -> int:
    """Layers whose outputs TensorRT stores in FP16, from the engine inspector."""
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return count_half_in_engine_information(info)


def count_half_in_engine_information(info: dict[str, Any]) -> int:
    """Count layers with a Half output in TensorRT's engine-information JSON."""
    count = 0
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):
            continue
        outputs = layer.get("Outputs", [])
        if any("Half" in str(o.get("Format/Datatype", "")) for o in outputs if isinstance(o, dict)):
            count += 1
    return count
