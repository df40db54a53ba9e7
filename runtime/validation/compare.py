"""Clinical parity between routes: the gate every faster route (FP16, TensorRT, ...) must pass against a reference.

Each route is evaluated on the same labelled set with the same operating point and the same bootstrap (resamples and
seed), so that its resamples are the reference's: a figure's change is then computed resample by resample (paired)
and its 95% interval is the percentile interval of those paired differences.

For each route against the reference:

- **Decision agreement** per labelled vertebra: the argmax class (a missed vertebra is normal) and the MRI decision
  (p(fresh) >= the operating point; never for a missed one). Both are shares of all labelled vertebrae.
- **Figures**: every figure of :meth:`ValidationResult.figures` (tasks, per level, detection, operating point), its
  value in both routes, the change and its interval, and whether the route's value lies outside the reference's 95%
  interval (a figure defined in one route and not in the other also counts as outside).
- **Changed vertebrae**: those whose class, MRI decision or detection differ, with both routes' p(fresh);
  **changed studies**: those whose MRI recommendation differs.

Gate (:class:`GateLimits`): passed when both agreements are >= ``min_agreement`` (default 99.5 %) and, unless
disabled, no figure lies outside the reference's interval. The reasons list every limit that failed. A figure whose
reference interval has no width (every resample gave the same value, e.g. a specificity of 1.000 [1.000, 1.000])
fails on any change at all: one vertebra flipped there moves it outside. Per-level figures count too, unless
``ungated`` leaves them out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from olvf.runtime.validation.evaluate import TASKS, ValidationResult
from olvf.runtime.validation.metrics import Interval, percentile_interval

DEFAULT_MIN_AGREEMENT = 0.995


@dataclass(frozen=True)
class GateLimits:
    """``ungated`` lists figure-name prefixes (e.g. ``("level.",)``) whose moves are reported but do not fail."""

    min_agreement: float = DEFAULT_MIN_AGREEMENT
    figures_inside_reference_interval: bool = True
    ungated: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be in [0, 1], not {self.min_agreement}")
        object.__setattr__(self, "ungated", tuple(self.ungated))

    def gates(self, figure: str) -> bool:
        return self.figures_inside_reference_interval and not figure.startswith(self.ungated)

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_agreement": self.min_agreement,
            "figures_inside_reference_interval": self.figures_inside_reference_interval,
            "ungated": list(self.ungated),
        }


@dataclass(frozen=True)
class FigureChange:
    name: str
    reference: float | None
    route: float | None
    change: float | None
    change_interval: Interval | None
    reference_interval: Interval | None
    outside_reference_interval: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "figure": self.name,
            "reference": self.reference,
            "route": self.route,
            "change": self.change,
            "change_ci95": self.change_interval.to_dict() if self.change_interval else None,
            "reference_ci95": self.reference_interval.to_dict() if self.reference_interval else None,
            "outside_reference_interval": self.outside_reference_interval,
        }


@dataclass(frozen=True)
class ChangedVertebra:
    study: str
    level: str
    label: str
    reference_class: str
    route_class: str
    reference_mri: bool
    route_mri: bool
    reference_detected: bool
    route_detected: bool
    reference_p_fresh: float
    route_p_fresh: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChangedStudy:
    study: str
    fresh_labelled: bool
    reference_mri: bool
    route_mri: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RouteDifference:
    """One route against the reference, and the gate's verdict on it."""

    reference: str
    route: str
    vertebrae: int
    class_agreed: int
    mri_agreed: int
    changed: tuple[ChangedVertebra, ...]
    changed_studies: tuple[ChangedStudy, ...]
    figures: tuple[FigureChange, ...]
    passed: bool
    reasons: tuple[str, ...]

    @property
    def class_agreement(self) -> float:
        return self.class_agreed / self.vertebrae

    @property
    def mri_agreement(self) -> float:
        return self.mri_agreed / self.vertebrae

    @property
    def outside(self) -> tuple[FigureChange, ...]:
        return tuple(f for f in self.figures if f.outside_reference_interval)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "route": self.route,
            "passed": self.passed,
            "reasons": list(self.reasons),
            "vertebrae": self.vertebrae,
            "class_agreement": self.class_agreement,
            "class_agreed": self.class_agreed,
            "mri_agreement": self.mri_agreement,
            "mri_agreed": self.mri_agreed,
            "changed_vertebrae": [c.to_dict() for c in self.changed],
            "changed_studies": [c.to_dict() for c in self.changed_studies],
            "figures": [f.to_dict() for f in self.figures],
        }


@dataclass(frozen=True)
class RouteComparison:
    reference: str
    routes: tuple[str, ...]
    limits: GateLimits
    differences: tuple[RouteDifference, ...]

    @property
    def passed(self) -> bool:
        return all(d.passed for d in self.differences)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f"{d.route}: {r}" for d in self.differences for r in d.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "routes": list(self.routes),
            "limits": self.limits.to_dict(),
            "passed": self.passed,
            "reasons": list(self.reasons),
            "differences": [d.to_dict() for d in self.differences],
        }


def _require_comparable(reference: str, ref: ValidationResult, name: str, other: ValidationResult) -> None:
    ref_ids = [(v.study, v.level, v.label, v.row) for v in ref.vertebrae]
    if ref.set_source != other.set_source or ref_ids != [(v.study, v.level, v.label, v.row) for v in other.vertebrae]:
        raise ValueError(f"routes {reference} and {name} were not evaluated on the same labelled set")
    if ref.operating_point != other.operating_point:
        raise ValueError(
            f"routes {reference} and {name} used different operating points "
            f"({ref.operating_point} and {other.operating_point}); evaluate both with the same one"
        )
    if (ref.bootstrap.resamples, ref.bootstrap.seed) != (other.bootstrap.resamples, other.bootstrap.seed):
        raise ValueError(f"routes {reference} and {name} were bootstrapped differently; use the same count and seed")
    if ref.bootstrap.resamples == 0:
        raise ValueError("the route comparison needs bootstrap intervals: evaluate with bootstrap > 0")


def _mri(v: Any, threshold: float) -> bool:
    return v.detected and v.p_fresh >= threshold


def compare_pair(
    reference: str, ref: ValidationResult, name: str, other: ValidationResult, limits: GateLimits
) -> RouteDifference:
    """One route against the reference; see the module docstring."""
    _require_comparable(reference, ref, name, other)
    threshold = ref.operating_point
    changed = []
    class_agreed = mri_agreed = 0
    for a, b in zip(ref.vertebrae, other.vertebrae):
        same_class = a.predicted_class == b.predicted_class
        same_mri = _mri(a, threshold) == _mri(b, threshold)
        class_agreed += same_class
        mri_agreed += same_mri
        if not (same_class and same_mri and a.detected == b.detected):
            changed.append(
                ChangedVertebra(
                    a.study,
                    a.level,
                    a.label,
                    a.predicted_class,
                    b.predicted_class,
                    _mri(a, threshold),
                    _mri(b, threshold),
                    a.detected,
                    b.detected,
                    a.p_fresh,
                    b.p_fresh,
                )
            )
    studies = tuple(
        ChangedStudy(a.key, a.fresh_labelled, a.mri_recommended, b.mri_recommended)
        for a, b in zip(ref.studies, other.studies)
        if a.mri_recommended != b.mri_recommended
    )
    ours, theirs = ref.figures(), other.figures()
    figures = []
    for key in sorted(set(ours) | set(theirs)):
        figures.append(_figure_change(key, ours.get(key), theirs.get(key), ref.replicates, other.replicates))
    n = len(ref.vertebrae)
    reasons = []
    ref_out, route_out = {k for k, _ in ref.not_assessed}, {k for k, _ in other.not_assessed}
    if ref_out != route_out:
        differ = sorted(ref_out ^ route_out)
        reasons.append(
            f"{len(differ)} studies assessed by one route only ({', '.join(differ[:3])}): the route changes which "
            "films get a verdict"
        )
    if class_agreed / n < limits.min_agreement:
        reasons.append(
            f"class agreement {class_agreed / n:.4f} ({n - class_agreed} of {n} vertebrae changed) "
            f"is below {limits.min_agreement:g}"
        )
    if mri_agreed / n < limits.min_agreement:
        reasons.append(
            f"MRI decision agreement {mri_agreed / n:.4f} ({n - mri_agreed} of {n} vertebrae changed) "
            f"is below {limits.min_agreement:g}"
        )
    for f in figures:
        if f.outside_reference_interval and limits.gates(f.name):
            reasons.append(f"{f.name} {_text(f.route)} is outside {reference}'s 95% interval {_span(f)}")
        elif f.reference is None and limits.gates(f.name) and _set_figure(f.name):
            # Undefined on both sides is no agreement: a route is never passed on a figure the set cannot measure.
            why = getattr(ours.get(f.name), "undefined", None) or "undefined"
            reasons.append(f"{f.name} not measurable on this set ({why}); use a labelled set that holds every class")
    return RouteDifference(
        reference,
        name,
        n,
        class_agreed,
        mri_agreed,
        tuple(changed),
        studies,
        tuple(figures),
        not reasons,
        tuple(reasons),
    )


#: figures whose definition needs only the labels (a set without positives or negatives cannot measure them);
#: predictive values also need the route to decide positively, and may stay undefined on a well-made set
SET_FIGURES = ("sensitivity", "specificity", "auc")


def _set_figure(name: str) -> bool:
    task, _, figure = name.partition(".")
    return task in TASKS and figure in SET_FIGURES


def _text(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _span(f: FigureChange) -> str:
    if f.reference_interval is None:
        return f"(reference {_text(f.reference)}, no interval)"
    return f"[{f.reference_interval.low:.4f}, {f.reference_interval.high:.4f}]"


def _figure_change(
    name: str, ref: Any, route: Any, ref_reps: Mapping[str, np.ndarray], route_reps: Mapping[str, np.ndarray]
) -> FigureChange:
    a = ref.value if ref is not None else None
    b = route.value if route is not None else None
    ref_interval = ref.interval if ref is not None else None
    if a is None or b is None:
        return FigureChange(name, a, b, None, None, ref_interval, outside_reference_interval=(a is None) != (b is None))
    interval = None
    if name in ref_reps and name in route_reps:
        interval = percentile_interval(route_reps[name] - ref_reps[name])  # NaN where either is undefined
    outside = ref_interval is not None and not ref_interval.contains(b)
    if ref_interval is None and not math.isclose(a, b, rel_tol=0, abs_tol=1e-12):
        outside = True  # no interval to move within: any change counts
    return FigureChange(name, a, b, b - a, interval, ref_interval, outside)


def compare_routes(
    results: Mapping[str, ValidationResult], *, reference: str | None = None, limits: GateLimits | None = None
) -> RouteComparison:
    """Compare every route of ``results`` (name -> result, insertion order) with ``reference`` (default the first).

    All results must come from :func:`evaluate` on the same set with the same operating point, bootstrap count and
    seed (ValueError otherwise: that is a bug in the caller, not in the data).
    """
    if len(results) < 2:
        raise ValueError("a route comparison needs at least two routes")
    names = tuple(results)
    reference = names[0] if reference is None else reference
    if reference not in results:
        raise ValueError(f"reference route {reference!r} is not among {', '.join(names)}")
    limits = limits or GateLimits()
    differences = tuple(
        compare_pair(reference, results[reference], name, results[name], limits) for name in names if name != reference
    )
    return RouteComparison(reference, names, limits, differences)
