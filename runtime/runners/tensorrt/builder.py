"""Build one TensorRT engine from an ONNX graph, FP16 for real, on TensorRT 10 or 11.

TensorRT 10 builds FP16 from the FP32 graph with the FP16 builder flag.
TensorRT 11 removed that flag: networks are strongly typed and precision comes
from the graph, so it builds from the bundle's FP16 graph (casts baked in). In
both cases the built engine's precision is read back (:mod:`.precision`: the
inspector where its spelling is known, else the engine's size) and an engine
meant to be FP16 that is shown to be FP32 is refused (exporters elsewhere
silently built FP32 on TensorRT 11).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olvf.errors import BackendError, BundleError, ParityError
from olvf.runtime.bundle.manifest import GraphSpec, Manifest
from olvf.runtime.runners.tensorrt.device import create_builder, create_runtime, tensorrt_logger
from olvf.runtime.runners.tensorrt.precision import PrecisionCheck, check_precision, read_layer_precisions

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


def source_graph(manifest: Manifest, role: str, plan: BuildPlan) -> GraphSpec:
    """The ONNX graph TensorRT builds from: FP32 plus the flag on 10, the FP16 graph on 11."""
    exact = [g for g in manifest.graphs if g.role == role and g.precision == plan.graph_precision]
    if exact:
        return exact[0]
    if role == "detector":
        # An ONNX-only detector has no FP16 twin (nothing to re-export it from): it builds as FP32.
        return manifest.graph(role)
    raise BundleError(
        f"TensorRT 11 builds FP16 engines only from an FP16 graph, and this bundle's {role} has none; "
        "re-export the bundle with olvf-export --precision fp16"
    )


def _progress_monitor(trt: Any, progress: Progress) -> Any:
    """Phases of a build, printed as they start: a Jetson build can take many minutes."""

    class Monitor(trt.IProgressMonitor):
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


@dataclass(frozen=True)
class BuiltEngine:
    """What a build produced: the serialised engine and what the manifest records about it."""

    data: bytes
    profile: dict[str, list[int]]
    half_layers: int
    layers: int
    timing_cache: bytes
    precision: PrecisionCheck


def build_engine(
    trt: Any,
    onnx_path: Path,
    graph: GraphSpec,
    *,
    plan: BuildPlan,
    profile: dict[str, list[int]],
    timing_cache: bytes,
    progress: Progress,
    fp32_graph_bytes: int | None = None,
) -> BuiltEngine:
    """Build one engine; refuse one meant to be FP16 that is shown to be FP32.

    ``fp32_graph_bytes``: the size of the role's FP32 ONNX graph, the yardstick of the size check.
    """
    logger = tensorrt_logger(trt)
    builder = create_builder(trt)
    # TensorRT 11 types every network strongly and only tolerates the old flag; ask for it where it exists.
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    flags = 1 << int(strongly_typed) if plan.strongly_typed and strongly_typed is not None else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path.name}: {errors[:300]}")
    config = builder.create_builder_config()
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # lets us read the layers' precision back
    config.progress_monitor = _progress_monitor(trt, progress)
    cache = config.create_timing_cache(timing_cache)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        # A cache from another device or TensorRT build: start a fresh one rather than fail the build.
        progress("      the timing cache does not fit this GPU or TensorRT; starting a new one")
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    optimisation = builder.create_optimization_profile()
    try:
        optimisation.set_shape(graph.input_name, profile["min"], profile["opt"], profile["max"])
    except RuntimeError as exc:  # the bindings raise RuntimeError for shapes TensorRT refuses
        raise BackendError(f"TensorRT refuses the profile {profile} for {graph.input_name}: {exc}") from None
    config.add_optimization_profile(optimisation)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT could not build an engine from {onnx_path.name}; see its messages above")
    data = bytes(serialized)
    engine = create_runtime(trt).deserialize_cuda_engine(data)
    if engine is None:
        raise BackendError(f"TensorRT cannot load the engine it just built from {onnx_path.name}")
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    verdict = check_precision(
        info,
        engine_bytes=len(data),
        fp32_graph_bytes=fp32_graph_bytes,
        expect_half=plan.fp16_flag or graph.precision == "fp16",
    )
    if verdict.disguised:
        raise ParityError(
            f"TensorRT built {onnx_path.name} as FP32, not FP16 ({verdict.evidence}; TensorRT {trt.__version__}); "
            "refusing an engine that is FP32 in disguise"
        )
    if not verdict.confirmed and verdict.precision == "fp16":
        progress(f"      FP16 {verdict.evidence}")
    return BuiltEngine(
        data,
        profile,
        read_layer_precisions(info).half,
        len(info.get("Layers", [])),
        bytes(config.get_timing_cache().serialize()),
        verdict,
    )
