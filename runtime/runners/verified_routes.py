"""Reduced-precision CPU routes, and the record that one kept the bundle's decisions.

A route is a backend and the precision it computes in (``openvino-int8``).
The FP32 graph on ONNX Runtime stays the reference. A reduced-precision
route is *verified* for a bundle only after a check on a labelled set showed
decision agreement and metric changes within limits (``olvf-validate``, or
for the demo bundle the phantom check of :mod:`olvf.runtime.checks.routes`);
:func:`record_verified_route` writes that into the manifest's
``verified_routes`` with the kind of CPU it was checked on, the sha256 of the
graphs it ran, the figures and the date. ``auto`` runs a reduced-precision
route only where such a record matches this CPU's kind and the bundle's
current graphs (:func:`usable_routes`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import olvf.json_text as json_text
from olvf.errors import BundleError
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.bundle.manifest import Manifest, VerifiedRoute
from olvf.runtime.bundle.updates import update_manifest
from olvf.runtime.runners.cpu import cpu_kind, same_kind


@dataclass(frozen=True)
class Route:
    name: str
    backend: str
    precision: str
    label: str
    #: graph precision per role it runs (the detector runs FP32 where no graph of its precision exists)
    graph_precision: str


ROUTES: dict[str, Route] = {
    r.name: r
    for r in (
        Route("openvino-int8", "openvino", "int8", "OpenVINO INT8 on CPU", "int8"),
        Route("openvino-bf16", "openvino", "bf16", "OpenVINO BF16 on CPU", "fp32"),
        Route("openvino-fp32", "openvino", "fp32", "OpenVINO FP32 on CPU", "fp32"),
    )
}
#: routes that change the arithmetic and so must be verified before auto runs them
REDUCED = ("openvino-int8", "openvino-bf16")
#: when a bundle records no speed for them, the order auto tries verified routes in (fastest first, as measured
#: on AVX-512 CPUs: INT8 about 0.3x, BF16 about 0.5x the time of FP32)
PREFERENCE = ("openvino-int8", "openvino-bf16")


def route(name: str) -> Route:
    try:
        return ROUTES[name]
    except KeyError:
        raise BundleError(f"unknown route {name!r}; choose one of: {', '.join(ROUTES)}") from None


def route_graphs(manifest: Manifest, name: str) -> dict[str, str]:
    """The files a route runs in this bundle and their sha256 (ensemble and detector graphs)."""
    chosen = route(name)
    files: dict[str, str] = {}
    for role in ("ensemble", "detector"):
        if manifest.has(role):
            graph = manifest.graph_for(role, chosen.graph_precision)
            if role == "ensemble" and graph.precision != chosen.graph_precision:
                raise BundleError(
                    f"bundle has no {chosen.graph_precision} ensemble graph for {name}; add one with "
                    "olvf-export --quantize BUNDLE --calibration RADIOGRAPHS"
                )
            files.update({member: manifest.files[member] for member in graph.members})
    return files


def is_current(record: VerifiedRoute, manifest: Manifest, here: dict[str, Any] | None = None) -> str | None:
    """Why ``record`` does not hold here (another CPU kind, changed graphs), or None when it does."""
    if not same_kind(record.cpu, here or cpu_kind()):
        return "verified on another kind of CPU"
    try:
        graphs = route_graphs(manifest, record.route)
    except BundleError as exc:
        return str(exc)
    if graphs != record.graphs:
        return "its graphs changed since it was verified"
    return None


def usable_routes(manifest: Manifest, here: dict[str, Any] | None = None) -> list[VerifiedRoute]:
    """Verified reduced-precision routes that hold on this CPU, fastest first.

    Fastest by the speed recorded when it was verified (``figures["speedup"]``,
    measured on this kind of CPU), else by :data:`PREFERENCE`.
    """
    here = here or cpu_kind()
    found = [r for r in manifest.verified_routes if r.route in REDUCED and is_current(r, manifest, here) is None]

    def order(record: VerifiedRoute) -> tuple[float, int]:
        speed = record.figures.get("speedup")
        return (-float(speed) if isinstance(speed, int | float) else 0.0, PREFERENCE.index(record.route))

    return sorted(found, key=order)


def record_verified_route(
    bundle_dir: str | Path,
    name: str,
    figures: dict[str, Any],
    *,
    evidence: str,
) -> Manifest:
    """Record in the bundle that route ``name`` passed its check on this CPU; return the new manifest.

    Call only after the check passed: this function records, it does not
    judge. ``figures``: what the check measured (agreement, metric changes,
    Grad-CAM correlation, limits, and ``speedup`` against the reference where
    measured); ``evidence``: what it was checked on (a labelled set's size and
    hash). A record for the same route and kind of CPU is replaced. The
    manifest is replaced atomically under the bundle's lock
    (:func:`olvf.runtime.bundle.updates.update_manifest`).
    """
    chosen = route(name)
    if chosen.name not in REDUCED:
        raise BundleError(f"{name} computes in FP32 and needs no verification; record only {', '.join(REDUCED)}")
    unmeasured = list(json_text.non_finite(figures, "figures"))
    if unmeasured:  # a NaN compares false with every limit: a check that produced one proved nothing
        raise BundleError(
            f"{name} not recorded: {', '.join(unmeasured[:5])} could not be measured; a route is recorded only "
            "when every figure of its check was measured"
        )
    folder = Path(bundle_dir)
    bundle = open_bundle(folder)
    checked = route_graphs(bundle.manifest, name)
    for member in checked:
        bundle.file(member)  # the route was checked on these bytes: prove they are the listed ones
    here = cpu_kind()
    record = VerifiedRoute(
        route=name,
        backend=chosen.backend,
        precision=chosen.precision,
        cpu=here,
        graphs=checked,
        figures=dict(figures),
        evidence=evidence,
        verified=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )

    def add(current: Manifest) -> Manifest:
        if route_graphs(current, name) != checked:  # another olvf replaced a graph meanwhile
            raise BundleError(f"the graphs of {name} changed while it was checked; check it again")
        kept = tuple(r for r in current.verified_routes if not (r.route == name and same_kind(r.cpu, here)))
        return dataclasses.replace(current, verified_routes=(*kept, record))

    return update_manifest(folder, add, "the verified route")


def describe(record: VerifiedRoute) -> str:
    """One line about a verified route, for reports and listings."""
    f = record.figures
    parts = [f"{k} {f[k]}" for k in ("decision_agreement", "mri_changed", "gradcam_min_r", "speedup") if k in f]
    return f"{record.route} verified {record.verified} on {record.evidence}" + (
        f": {', '.join(parts)}" if parts else ""
    )
