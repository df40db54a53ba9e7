"""Build TensorRT FP16 engines from a bundle's ONNX graphs, on the machine that will run them.

TensorRT 10 builds FP16 from the FP32 graph with the FP16 builder flag.
TensorRT 11 removed that flag: networks are strongly typed and precision comes
from the graph, so it builds from the bundle's FP16 graph (casts baked in). In
both cases the built engine is inspected and refused if no layer actually
runs in FP16 (exporters elsewhere silently built FP32 on TensorRT 11).

An engine joins the bundle only after it reproduced ONNX Runtime on CPU
(:mod:`olvf.runtime.verify`). New engines get new file names and the
manifest is replaced atomically, so an interrupted or refused build leaves the
bundle exactly as it was. Engines built on other machines (another GPU or
TensorRT version) stay in the bundle beside this machine's.

Lives in the runtime, not the exporter: engines are built on the target (a
Jetson has no torch), by ``olvf-infer --rebuild-engines`` or on the
container's first start, as well as by ``olvf-export --engine``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from olvf.errors import BackendError, BundleError, ParityError
from olvf.runtime.atomic import write_bytes_atomic, write_text_atomic
from olvf.runtime.bundle import Bundle, open_bundle, sha256_file
from olvf.runtime.manifest import MANIFEST_NAME, EngineSpec, GraphSpec, Manifest

Progress = Callable[[str], None]

ROLES = ("detector", "ensemble")
# Profile "opt" shapes: what one study usually sends (one radiograph; T12-L5 or L1-L5 crops).
TYPICAL_BATCH = {"detector": 1, "ensemble": 6}
ENGINE_SUFFIX = ".engine"


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


def profile_shapes(graph: GraphSpec, typical: int, max_batch: int | None = None) -> dict[str, list[int]]:
    """One optimisation profile: batch 1, a typical study, the graph's maximum (or less, if asked)."""
    tail = [int(d) for d in graph.input_shape[1:]]
    top = max(1, min(graph.max_batch, max_batch or graph.max_batch))
    opt = min(max(1, typical), top)
    return {"min": [1, *tail], "opt": [opt, *tail], "max": [top, *tail]}


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


@dataclass(frozen=True)
class BuiltEngine:
    """What a build produced: the serialised engine and what the manifest records about it."""

    data: bytes
    profile: dict[str, list[int]]
    half_layers: int
    layers: int
    timing_cache: bytes


def build_engine(
    trt: Any,
    onnx_path: Path,
    graph: GraphSpec,
    *,
    plan: BuildPlan,
    profile: dict[str, list[int]],
    timing_cache: bytes,
    progress: Progress,
) -> BuiltEngine:
    """Build one engine; refuse one that claims FP16 but has no FP16 layer."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
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
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # lets us check the layers' precision
    config.progress_monitor = _progress_monitor(trt, progress)
    cache = config.create_timing_cache(timing_cache)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        # A cache from another device or TensorRT build: start a fresh one rather than fail the build.
        progress("      the timing cache does not fit this GPU or TensorRT; starting a new one")
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(graph.input_name, profile["min"], profile["opt"], profile["max"])
    config.add_optimization_profile(optimisation)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT could not build an engine from {onnx_path.name}; see its messages above")
    data = bytes(serialized)
    engine = trt.Runtime(logger).deserialize_cuda_engine(data)
    if engine is None:
        raise BackendError(f"TensorRT cannot load the engine it just built from {onnx_path.name}")
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    half, layers = count_half_in_engine_information(info), len(info.get("Layers", []))
    expect_half = plan.fp16_flag or graph.precision == "fp16"
    if expect_half and half == 0:
        raise ParityError(
            f"TensorRT built {onnx_path.name} without a single FP16 layer (TensorRT {trt.__version__}); "
            "refusing an engine that is FP32 in disguise"
        )
    return BuiltEngine(data, profile, half, layers, bytes(config.get_timing_cache().serialize()))


def count_half_in_engine_information(info: dict[str, Any]) -> int:
    """Count layers with an FP16 output in TensorRT's engine-information JSON (DETAILED verbosity)."""
    count = 0
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):
            continue
        outputs = layer.get("Outputs", [])
        if any(_is_half(o) for o in outputs if isinstance(o, dict)):
            count += 1
    return count


def _is_half(output: dict[str, Any]) -> bool:
    # TensorRT 10 writes e.g. "Row major linear FP16 format" under "Format/Datatype"; TensorRT 11 splits
    # that field into "Format" and "DataType". Any datatype field naming FP16 / Half counts.
    return any(
        "datatype" in key.lower() and ("fp16" in str(value).lower() or "half" in str(value).lower())
        for key, value in output.items()
    )


# --- the bundle's engines ---------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def machine_tag(here: Any) -> str:
    """``orin-sm87``: the GPU part of engine and timing-cache file names."""
    return f"{_slug(here.gpu_name)}-sm{here.compute_capability.replace('.', '')}"


def timing_cache_name(here: Any) -> str:
    """One timing cache per TensorRT version and GPU: caches do not move between them either."""
    return f"tensorrt-{here.tensorrt_version}-{machine_tag(here)}.timing-cache"


def engines_needed(bundle: Bundle, here: Any) -> list[str]:
    """Roles without a current engine for this machine (missing, or built from an older graph)."""
    from olvf.runtime.runners.tensorrt import same_machine

    needed = []
    for role in ROLES:
        if not bundle.manifest.has(role):
            continue
        fresh = [
            e
            for e in bundle.manifest.engines
            if e.role == role and same_machine(e, here) and bundle.manifest.files.get(e.source_graph) == e.source_sha256
        ]
        if not fresh:
            needed.append(role)
    return needed


def _check_writable(path: Path) -> None:
    if not os.access(path, os.W_OK | os.X_OK):
        raise BundleError(
            f"cannot write engines into {path} (read-only); give olvf write access to the bundle folder "
            "(in Docker: mount it without :ro)"
        )


@contextlib.contextmanager
def _build_lock(folder: Path, progress: Progress) -> Iterator[None]:
    """One build per bundle at a time: two containers starting together must not both rebuild.

    The lock is on the bundle folder itself, so no lock file is left in it.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, builds stay atomic on their own
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("another olvf is building engines into this bundle; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def build_bundle_engines(
    bundle_dir: str | Path,
    *,
    progress: Progress = lambda _line: None,
    max_batch: int | None = None,
    device: int = 0,
    only_missing: bool = False,
    verify: Callable[[Bundle], dict[str, Any]] | None = None,
) -> Manifest | None:
    """Build, check and add this machine's engines to a bundle; return the new manifest.

    ``only_missing``: build only when this machine has no current engine for
    some role (else return None without building). ``verify`` runs on a
    bundle that already lists the new engines (in memory) and raises if they
    do not reproduce ONNX Runtime; default: :func:`verify_engines`. Nothing in
    the bundle changes unless every engine was built, is FP16 where asked and
    passed.
    """
    from olvf.runtime.runners.tensorrt import device_facts, import_tensorrt, select_device

    folder = Path(bundle_dir)
    open_bundle(folder, verify=False)  # a folder that is no bundle gets its own message first
    trt, _ = import_tensorrt()
    here = device_facts(device)
    plan = build_plan(here.tensorrt_version)
    select_device(device)  # the builder builds for the current GPU
    with _build_lock(folder, progress):
        bundle = open_bundle(folder)  # read under the lock: another build may just have finished
        if only_missing:
            needed = engines_needed(bundle, here)
            if not needed:
                return None  # a read-only bundle with current engines is fine
            progress(f"no current TensorRT engines for this machine ({', '.join(needed)}); building them")
        _check_writable(folder)
        check = verify or functools.partial(verify_engines, device=device)
        try:
            return _build(trt, bundle, here, plan, progress=progress, max_batch=max_batch, verify=check)
        except OSError as exc:  # a full disk on a Jetson, an unreadable timing cache
            raise BundleError(
                f"cannot write or read engine files in {folder} ({exc.strerror or exc}); "
                "free disk space or fix the folder's permissions, then run olvf-infer --rebuild-engines"
            ) from None


def _build(
    trt: Any,
    bundle: Bundle,
    here: Any,
    plan: BuildPlan,
    *,
    progress: Progress,
    max_batch: int | None,
    verify: Callable[[Bundle], dict[str, Any]],
) -> Manifest:
    from olvf.runtime.runners.tensorrt import same_machine

    manifest = bundle.manifest
    wanted = [r for r in ROLES if manifest.has(r)]
    if not wanted:
        raise BundleError(f"bundle {bundle.path} has no graphs to build engines from")

    cache_path = bundle.path / timing_cache_name(here)
    timing_cache = cache_path.read_bytes() if cache_path.is_file() else b""
    token = secrets.token_hex(3)  # new names: the live engines stay valid until the manifest moves
    written: list[Path] = []
    specs: list[EngineSpec] = []
    try:
        for role in wanted:
            graph = source_graph(manifest, role, plan)
            profile = profile_shapes(graph, TYPICAL_BATCH[role], max_batch)
            progress(
                f"building the {role} engine from {graph.file} for {here.gpu_name} (TensorRT {here.tensorrt_version}, "
                f"batch {profile['min'][0]}..{profile['max'][0]}); this can take minutes, longer on a Jetson"
            )
            started = time.monotonic()
            built = build_engine(
                trt,
                bundle.file(graph.file),
                graph,
                plan=plan,
                profile=profile,
                timing_cache=timing_cache,
                progress=progress,
            )
            timing_cache = built.timing_cache
            name = f"{role}.{machine_tag(here)}.{token}{ENGINE_SUFFIX}"
            path = bundle.file(name)
            written.append(path)
            write_bytes_atomic(path, built.data)
            specs.append(
                EngineSpec(
                    role=role,
                    file=name,
                    source_graph=graph.file,
                    source_sha256=manifest.files[graph.file],
                    precision="fp16" if built.half_layers else "fp32",
                    tensorrt_version=here.tensorrt_version,
                    gpu_name=here.gpu_name,
                    compute_capability=here.compute_capability,
                    profile=built.profile,
                    layers=built.layers,
                    half_layers=built.half_layers,
                    built=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                )
            )
            progress(
                f"   {role} engine built in {time.monotonic() - started:.0f} s: {len(built.data) / 2**20:.1f} MiB, "
                f"{built.half_layers} of {built.layers} layers FP16"
            )
        # The timing cache only speeds up later builds: kept even if verification refuses the engines.
        write_bytes_atomic(cache_path, timing_cache, force=True)
        kept = [e for e in manifest.engines if not (e.role in wanted and same_machine(e, here))]
        replaced = {e.file for e in manifest.engines} - {e.file for e in kept}
        files = {k: v for k, v in manifest.files.items() if k not in replaced}
        files.update({spec.file: sha256_file(bundle.file(spec.file)) for spec in specs})
        candidate = dataclasses.replace(manifest, engines=(*kept, *specs), files=files)
        candidate.validate()
        trial = Bundle(bundle.path, candidate, manifest_sha256="")
        progress("checking the engines against ONNX Runtime on CPU (phantom crops, noise, detector boxes)")
        figures = verify(trial)
        replaced_keys = {f"tensorrt:{name}" for name in replaced}
        parity = {k: v for k, v in manifest.parity.items() if k not in replaced_keys}
        parity.update({f"tensorrt:{spec.file}": figures for spec in specs})
        new = dataclasses.replace(candidate, parity=parity)
        new.validate()
        write_text_atomic(bundle.path / MANIFEST_NAME, new.to_json(), force=True)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    retired = {e.file for e in manifest.engines} - {e.file for e in new.engines}
    for name in retired:
        bundle.file(name).unlink(missing_ok=True)
    return new


def verify_engines(bundle: Bundle, *, device: int = 0) -> dict[str, Any]:
    """This machine's engines against ONNX Runtime on CPU with the FP32 graphs; raises ParityError."""
    from olvf.runtime.session import open_runtime
    from olvf.runtime.verify import compare_runtimes

    with (
        open_runtime(bundle, "tensorrt", device=device) as candidate,
        open_runtime(bundle, "onnxruntime", precision="fp32") as reference,
    ):
        try:
            return compare_runtimes(candidate, reference)
        except ParityError as exc:
            raise ParityError(
                f"{exc}; the engines were not added to the bundle (FP16 overflow in some layer is the usual cause: "
                "report it with the bundle's manifest)"
            ) from None


def describe(spec: EngineSpec) -> str:
    """One line about an engine, for listings."""
    return (
        f"{spec.role}: {spec.file} ({spec.precision}, {spec.half_layers}/{spec.layers} layers FP16, "
        f"batch {spec.profile.get('min', ['?'])[0]}..{spec.profile.get('max', ['?'])[0]}) "
        f"for {spec.gpu_name} sm{spec.compute_capability}, TensorRT {spec.tensorrt_version}"
    )


__all__ = [
    "BuildPlan",
    "build_bundle_engines",
    "build_plan",
    "engines_needed",
    "profile_shapes",
    "verify_engines",
]
