"""A bundle's TensorRT engines: built on this machine, checked, and added to the bundle atomically.

An engine joins the bundle only after it reproduced ONNX Runtime on CPU
(:mod:`olvf.runtime.checks.verify`). New engines get new file names and the
manifest is replaced atomically, so an interrupted or refused build leaves the
bundle exactly as it was. Engines built on other machines (another GPU or
TensorRT version) stay in the bundle beside this machine's.

Lives in the runtime, not the exporter: engines are built on the target (a
Jetson has no torch), by ``olvf-infer --rebuild-engines`` or on the
container's first start, as well as by ``olvf-export --engine``.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from olvf.atomic import write_bytes_atomic, write_text_atomic
from olvf.digest import sha256_file
from olvf.errors import BundleError, ParityError
from olvf.runtime.bundle.files import Bundle, open_bundle
from olvf.runtime.bundle.manifest import MANIFEST_NAME, EngineSpec, Manifest
from olvf.runtime.bundle.updates import bundle_lock, check_writable
from olvf.runtime.runners.tensorrt.builder import BuildPlan, build_engine, build_plan, source_graph
from olvf.runtime.runners.tensorrt.device import DeviceFacts, device_facts, import_tensorrt, select_device
from olvf.runtime.runners.tensorrt.identity import machine_tag, same_machine
from olvf.runtime.runners.tensorrt.profiles import TYPICAL_BATCH, profile_shapes

Progress = Callable[[str], None]

ROLES = ("detector", "ensemble")
ENGINE_SUFFIX = ".engine"


def timing_cache_name(here: DeviceFacts) -> str:
    """One timing cache per TensorRT version and GPU: caches do not move between them either."""
    return f"tensorrt-{here.tensorrt_version}-{machine_tag(here)}.timing-cache"


def engines_needed(bundle: Bundle, here: DeviceFacts) -> list[str]:
    """Roles without a current engine for this machine (missing, or built from an older graph)."""
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
    folder = Path(bundle_dir)
    open_bundle(folder, verify=False)  # a folder that is no bundle gets its own message first
    trt, _ = import_tensorrt()
    here = device_facts(device)
    plan = build_plan(here.tensorrt_version)
    select_device(device)  # the builder builds for the current GPU
    with bundle_lock(folder, progress, "building engines into"):
        bundle = open_bundle(folder)  # read under the lock: another build may just have finished
        if only_missing:
            needed = engines_needed(bundle, here)
            if not needed:
                return None  # a read-only bundle with current engines is fine
            progress(f"no current TensorRT engines for this machine ({', '.join(needed)}); building them")
        check_writable(folder, "engines")
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
    here: DeviceFacts,
    plan: BuildPlan,
    *,
    progress: Progress,
    max_batch: int | None,
    verify: Callable[[Bundle], dict[str, Any]],
) -> Manifest:
    manifest = bundle.manifest
    wanted = [r for r in ROLES if manifest.has(r)]
    if not wanted:
        raise BundleError(f"bundle {bundle.path} has no graphs to build engines from")

    cache_path = bundle.path / timing_cache_name(here)
    timing_cache = cache_path.read_bytes() if cache_path.is_file() else b""
    token = secrets.token_hex(3)  # new names: the live engines stay valid until the manifest moves
    written: list[Path] = []
    specs: list[EngineSpec] = []
    evidence: dict[str, str] = {}  # engine file -> how its precision was established
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
                fp32_graph_bytes=_fp32_graph_bytes(bundle, role),
            )
            timing_cache = built.timing_cache
            name = f"{role}.{machine_tag(here)}.{token}{ENGINE_SUFFIX}"
            path = bundle.path / name
            written.append(path)
            write_bytes_atomic(path, built.data)
            specs.append(
                EngineSpec(
                    role=role,
                    file=name,
                    source_graph=graph.file,
                    source_sha256=manifest.files[graph.file],
                    precision=built.precision.precision,
                    tensorrt_version=here.tensorrt_version,
                    gpu_name=here.gpu_name,
                    compute_capability=here.compute_capability,
                    profile=built.profile,
                    layers=built.layers,
                    half_layers=built.half_layers,
                    built=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                )
            )
            evidence[name] = built.precision.evidence
            progress(
                f"   {role} engine built in {time.monotonic() - started:.0f} s: {len(built.data) / 2**20:.1f} MiB, "
                f"{built.precision.precision} ({built.precision.evidence})"
            )
        # The timing cache only speeds up later builds: kept even if verification refuses the engines.
        write_bytes_atomic(cache_path, timing_cache, force=True)
        kept = [e for e in manifest.engines if not (e.role in wanted and same_machine(e, here))]
        replaced = {e.file for e in manifest.engines} - {e.file for e in kept}
        files = {k: v for k, v in manifest.files.items() if k not in replaced}
        files.update({spec.file: sha256_file(bundle.path / spec.file) for spec in specs})
        candidate = dataclasses.replace(manifest, engines=(*kept, *specs), files=files)
        candidate.validate()
        trial = Bundle(bundle.path, candidate, manifest_sha256="")
        progress("checking the engines against ONNX Runtime on CPU (phantom crops, noise, detector boxes)")
        figures = verify(trial)
        replaced_keys = {f"tensorrt:{name}" for name in replaced}
        parity = {k: v for k, v in manifest.parity.items() if k not in replaced_keys}
        parity.update({f"tensorrt:{spec.file}": {**figures, "precision_check": evidence[spec.file]} for spec in specs})
        new = dataclasses.replace(candidate, parity=parity)
        new.validate()
        write_text_atomic(bundle.path / MANIFEST_NAME, new.to_json(), force=True)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    retired = {e.file for e in manifest.engines} - {e.file for e in new.engines}
    for name in retired:
        (bundle.path / name).unlink(missing_ok=True)
    return new


def _fp32_graph_bytes(bundle: Bundle, role: str) -> int | None:
    """Size of the role's FP32 ONNX graph: what an FP16 engine must be well under (see the precision check)."""
    graphs = [g for g in bundle.manifest.graphs if g.role == role and g.precision == "fp32"]
    if not graphs:
        return None
    path = bundle.path / graphs[0].file  # only its size: no need to hash it
    return path.stat().st_size if path.is_file() else None


def verify_engines(bundle: Bundle, *, device: int = 0) -> dict[str, Any]:
    """This machine's engines against ONNX Runtime on CPU with the FP32 graphs; raises ParityError."""
    from olvf.runtime.checks.verify import compare_runtimes
    from olvf.runtime.study.runtime import open_runtime

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
    layers = (
        f"{spec.half_layers}/{spec.layers} layers FP16"
        if spec.half_layers or spec.precision != "fp16"
        else "FP16 not shown per layer (see the manifest's precision_check)"
    )
    return (
        f"{spec.role}: {spec.file} ({spec.precision}, {layers}, "
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
