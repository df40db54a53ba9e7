"""Run a labelled set through the study pipeline on one or more routes: the predictions validation scores.

A *route* is a backend and a precision (``onnxruntime-fp32``, ``onnxruntime-fp16``,
``tensorrt``, ``auto``...): what a workstation would deploy. Every route runs
the same studies through the same :class:`~olvf.runtime.study.pipeline.StudyPipeline`
as ``olvf-infer`` (batched across studies), so the table describes what the
deployed bundle does, not a re-implementation of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

import olvf
from olvf.digest import sha256_file
from olvf.errors import UsageError
from olvf.runtime.bundle.manifest import PRECISIONS, Manifest
from olvf.runtime.bundle.updates import update_manifest
from olvf.runtime.runners import backend_names
from olvf.runtime.study.pipeline import DEFAULT_BATCH, StudyPipeline
from olvf.runtime.study.results import InputFailure, StudyResult
from olvf.runtime.validation.compare import GateLimits, RouteComparison, compare_routes
from olvf.runtime.validation.evaluate import MISSED_RULE, ValidationResult, evaluate
from olvf.runtime.validation.labels import LabelledSet
from olvf.runtime.validation.predictions import PredictedVertebra, StudyPrediction
from olvf.vocabulary import CLASSES

Progress = Callable[[str], None]
ROUTE_PRECISIONS = (*PRECISIONS, "bf16")  # BF16 is arithmetic on the FP32 graph, not a graph of its own
# Routes whose answers may be compared with the bundle's: they compute in FP32.
FP32_REFERENCES = ("onnxruntime-fp32", "openvino-fp32", "torch", "torch-fp32")


@dataclass(frozen=True)
class Route:
    """``label`` as the user wrote it; what :func:`olvf.load` is asked for."""

    label: str
    backend: str
    precision: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def parse_route(text: str) -> Route:
    """``BACKEND[-PRECISION]``: ``auto``, ``onnxruntime-fp32``, ``onnxruntime-fp16``, ``tensorrt``, ``torch``..."""
    backend, _, precision = text.partition("-")
    names = ("auto", *backend_names())
    if backend not in names:
        raise UsageError(
            f"route {text!r}: unknown backend {backend!r}; routes are BACKEND[-PRECISION], BACKEND one of "
            f"{', '.join(names)}"
        )
    if precision and precision not in ROUTE_PRECISIONS:
        raise UsageError(f"route {text!r}: unknown precision {precision!r}; one of {', '.join(ROUTE_PRECISIONS)}")
    options: dict[str, Any] = {"device": "cpu"} if backend == "onnxruntime" else {}
    return Route(text, backend, precision or None, options)


def prediction(key: str, outcome: StudyResult | InputFailure) -> StudyPrediction:
    """What validation needs of one study result: per vertebra its level, box, detector score, probabilities."""
    if isinstance(outcome, InputFailure):
        return StudyPrediction.failed(key, str(outcome.error))
    if not outcome.assessed:
        return StudyPrediction(key, (), not_assessed=outcome.applicability.reason or "not assessed")
    classes = outcome.classification.classes
    detections = outcome.detections
    vertebrae = []
    for i, level in enumerate(detections.levels):
        score = float(detections.scores[i])
        vertebrae.append(
            PredictedVertebra(
                level=level,
                box=tuple(float(v) for v in detections.boxes[i]) if outcome.cascade else None,  # type: ignore[arg-type]
                probabilities=_in_class_order(classes, outcome.classification.probabilities[i]),
                score=score if np.isfinite(score) else 1.0,
            )
        )
    return StudyPrediction(key, tuple(vertebrae))


def _in_class_order(classes: Sequence[str], row: np.ndarray) -> tuple[float, ...]:
    """One crop's probabilities in the validation's class order, whatever order the bundle's outputs have."""
    by_name = dict(zip(classes, (float(p) for p in row)))
    missing = [c for c in CLASSES if c not in by_name]
    if missing:
        raise ValueError(f"the bundle's classes {', '.join(classes)} lack {', '.join(missing)}")
    return tuple(by_name[c] for c in CLASSES)


@dataclass(frozen=True)
class RouteRun:
    """One route's predictions and what ran them."""

    route: Route
    predictions: Mapping[str, StudyPrediction]
    backend: dict[str, Any]
    operating_point: float
    seconds: float
    demo: bool = False  # the bundle is the demo: every report of it says so


def run_route(
    bundle_dir: Path,
    labelled: LabelledSet,
    route: Route,
    *,
    batch: int = DEFAULT_BATCH,
    progress: Progress = lambda _line: None,
) -> RouteRun:
    """Every study of ``labelled`` through the pipeline on ``route``."""
    keys = {str(study.path): study.key for study in labelled.studies}
    started = perf_counter()
    with olvf.load(bundle_dir, backend=route.backend, precision=route.precision, **dict(route.options)) as rt:
        pipeline = StudyPipeline(rt, batch=batch)
        predictions: dict[str, StudyPrediction] = {}
        for outcome in pipeline.run([study.path for study in labelled.studies]):
            predictions[keys[outcome.source]] = prediction(keys[outcome.source], outcome)
            if len(predictions) % 20 == 0:
                progress(f"   {route.label}: {len(predictions)}/{len(keys)} studies")
        backend = {"name": rt.backend, "device": rt.runner.device if rt.runner else "cpu", "precision": rt.precision}
        backend["why"] = rt.selection.why
        operating_point = pipeline.operating_point
        demo = rt.manifest.demo
    return RouteRun(route, predictions, backend, operating_point, perf_counter() - started, demo)


def set_operating_point(bundle_dir: Path, threshold: float, record: Mapping[str, Any]) -> tuple[float, Manifest]:
    """Store ``threshold`` as the bundle's fresh operating point; the old value goes into the history with
    ``record`` (what chose it). Returns the old value and the new manifest."""
    old: list[float] = []

    def change(manifest: Manifest) -> Manifest:
        import dataclasses

        old.append(manifest.fresh_operating_point)
        entry = {
            "fresh": manifest.fresh_operating_point,
            "replaced_by": threshold,
            "replaced": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **dict(record),
        }
        return dataclasses.replace(
            manifest,
            operating_points={**manifest.operating_points, "fresh": threshold},
            operating_point_history=(*manifest.operating_point_history, entry),
        )

    manifest = update_manifest(bundle_dir, change, "the operating point")
    return old[0], manifest


def restore_operating_point(bundle_dir: Path) -> tuple[float, float]:
    """Undo the last :func:`set_operating_point`: the previous value returns, its history entry goes.

    Returns (the value removed, the value restored)."""
    values: list[float] = []

    def change(manifest: Manifest) -> Manifest:
        import dataclasses

        if not manifest.operating_point_history:
            raise UsageError(f"bundle {bundle_dir} has no earlier operating point to restore")
        last = manifest.operating_point_history[-1]
        values.extend([manifest.fresh_operating_point, float(last["fresh"])])
        return dataclasses.replace(
            manifest,
            operating_points={**manifest.operating_points, "fresh": float(last["fresh"])},
            operating_point_history=manifest.operating_point_history[:-1],
        )

    update_manifest(bundle_dir, change, "the operating point")
    return values[0], values[1]


def route_labels(routes: Sequence[Route]) -> list[str]:
    labels = [r.label for r in routes]
    if len(set(labels)) != len(labels):
        raise UsageError(f"each route once, please: {', '.join(labels)}")
    return labels


@dataclass(frozen=True)
class Validation:
    """Every route's figures on one labelled set, and the gate's verdict when there are several."""

    labelled: LabelledSet
    runs: dict[str, RouteRun]
    results: dict[str, ValidationResult]
    comparison: RouteComparison | None
    context: dict[str, Any]


def validate_routes(
    bundle: Path,
    labelled: LabelledSet,
    routes: Sequence[Route],
    *,
    target_sensitivity: float | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
    batch: int = DEFAULT_BATCH,
    limits: GateLimits | None = None,
    progress: Progress = lambda _line: None,
) -> Validation:
    """Run and score each route; the first is the reference the others are gated against."""
    names = route_labels(routes)
    runs: dict[str, RouteRun] = {}
    results: dict[str, ValidationResult] = {}
    for route in routes:
        progress(f"route {route.label}: {len(labelled.studies)} studies through the pipeline")
        runs[route.label] = run_route(bundle, labelled, route, batch=batch, progress=progress)
    # The figures are the assessed studies' (a study without a verdict has no class to score); a study any route
    # left unassessed is left out of every route's figures, so that all are scored on the same studies, and each
    # route reports its own not-assessed studies and rate beside them.
    excluded = {key for run_ in runs.values() for key, p in run_.predictions.items() if p.not_assessed is not None}
    assessed = LabelledSet(labelled.source, tuple(s for s in labelled.studies if s.key not in excluded))
    if not assessed.studies:
        first = next(p.not_assessed for r in runs.values() for p in r.predictions.values() if p.not_assessed)
        raise UsageError(
            f"none of the {len(labelled.studies)} studies of {labelled.source} was assessed: the set lies outside "
            f"the bundle's intended use (first reason: {first}); validate on the films the bundle is for"
        )
    for name, run_ in runs.items():
        result = evaluate(
            assessed,
            {key: p for key, p in run_.predictions.items() if key not in excluded},
            operating_point=run_.operating_point,
            target_sensitivity=target_sensitivity,
            bootstrap=bootstrap,
            seed=seed,
        )
        refused = tuple((key, p.not_assessed) for key, p in run_.predictions.items() if p.not_assessed is not None)
        results[name] = dataclasses.replace(result, studies_offered=len(labelled.studies), not_assessed=refused)
    comparison = compare_routes(results, reference=names[0], limits=limits) if len(routes) > 1 else None
    context = {
        "olvf": olvf.__version__,
        "bundle": {
            "path": str(bundle),
            "manifest_sha256": sha256_file(bundle / "manifest.json"),
            "demo": next(iter(runs.values())).demo,
        },
        "set": {"labels": str(labelled.source), "sha256": sha256_file(labelled.source)},
        "routes": {name: {**r.backend, "seconds": round(r.seconds, 2)} for name, r in runs.items()},
        "missed_vertebrae": MISSED_RULE,
    }
    return Validation(labelled, runs, results, comparison, context)


def record_passed_routes(bundle: Path, validation: Validation, progress: Progress = lambda _line: None) -> list[str]:
    """Record as verified, on this kind of CPU, every reduced-precision route that passed the gate against an FP32
    reference; ``auto`` runs only such routes. Returns the routes recorded."""
    from olvf.runtime.runners.verified_routes import REDUCED, record_verified_route

    comparison = validation.comparison
    if comparison is None or comparison.reference not in FP32_REFERENCES:
        return []
    recorded = []
    reference_seconds = validation.runs[comparison.reference].seconds
    for difference in comparison.differences:
        if not difference.passed or difference.route not in REDUCED:
            continue
        figures = {
            **difference.to_dict(),
            "speedup": round(reference_seconds / max(validation.runs[difference.route].seconds, 1e-9), 3),
            "limits": comparison.limits.to_dict(),
        }
        studies = len(validation.labelled.studies)
        evidence = f"olvf-validate on {studies} labelled studies (labels sha256 {validation.context['set']['sha256']})"
        record_verified_route(bundle, difference.route, figures, evidence=evidence)
        progress(f"{difference.route}: recorded in {bundle} as verified on this kind of CPU")
        recorded.append(difference.route)
    return recorded
