"""Per-vertebra figures with study-level bootstrap intervals: the arithmetic of validation, numpy only.

Binary figures (:func:`binary_figures`)
    For a task (e.g. fracture vs normal) each vertebra has a truth (positive or not), a decision (flagged or not;
    the caller says how it was made: argmax or a threshold) and a score (the probability the ROC ranks by).
    Accuracy, sensitivity (recall of positives), specificity, PPV and NPV come from the decisions; ROC AUC and the ROC
    curve from the scores. A figure whose denominator is empty is *undefined*: its value is ``None`` with the reason
    (sensitivity without positives, specificity without negatives, AUC without both), never 0 or 0.5.

ROC AUC
    The Mann-Whitney statistic: the probability that a random positive scores higher than a random negative, equal
    scores counting 1/2. This equals the trapezoidal area under the ROC curve through every distinct threshold (what
    scikit-learn's ``roc_auc_score`` computes). The curve's points are those of ``roc_curve(drop_intermediate=False)``:
    one per distinct score, from the origin (threshold +inf) to (1, 1).

Bootstrap
    95% intervals by the percentile method: ``B`` resamples of the **studies** (with replacement, as many as the set
    has), because the vertebrae of one radiograph share a patient, a film and an exposure and are not independent.
    A resample is a count per study; every figure is computed with each vertebra weighted by its study's count,
    which is exactly the figure of the resampled set. The interval is the 2.5th and 97.5th percentile (numpy's linear
    interpolation) of the figure over the resamples **in which it is defined**; resamples where it is not (e.g. no
    fresh vertebra drawn, so no sensitivity) are left out, and how many were used is reported
    (:attr:`Interval.resamples`). A figure undefined on the whole set has no interval. Resamples come from
    ``numpy.random.default_rng(seed)``: the same seed and set give the same intervals, and two routes evaluated with
    the same seed are resampled identically (paired), which the route comparison relies on.

Operating point (:func:`operating_point_for`)
    The highest threshold on a score whose sensitivity reaches the target, placed halfway to the next lower score seen
    in the set (the same decisions on this set, with a margin against rounding elsewhere), with the specificity it
    costs. Missed vertebrae are never flagged, whatever the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from olvf.errors import InputError

CONFIDENCE = 0.95
BINARY_FIGURES: tuple[str, ...] = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "auc")
UNDEFINED_BECAUSE = {
    "accuracy": "no vertebrae",
    "sensitivity": "no positives",
    "specificity": "no negatives",
    "ppv": "no positive decisions",
    "npv": "no negative decisions",
    "auc": "needs both positives and negatives",
}


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval and the number of resamples in which the figure was defined."""

    low: float
    high: float
    resamples: int

    def contains(self, value: float, slack: float = 1e-12) -> bool:
        return self.low - slack <= value <= self.high + slack

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "resamples": self.resamples}


@dataclass(frozen=True)
class Figure:
    """A figure's value on the whole set (None when undefined, with why) and its interval (None without bootstrap)."""

    value: float | None
    interval: Interval | None = None
    undefined: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "ci95": self.interval.to_dict() if self.interval else None,
            **({"undefined": self.undefined} if self.undefined else {}),
        }


@dataclass(frozen=True, eq=False)
class StudyResamples:
    """``counts[b, s]``: how many times study ``s`` is drawn in resample ``b``."""

    counts: np.ndarray
    seed: int

    @property
    def n(self) -> int:
        return int(self.counts.shape[0])

    def weights(self, study_index: np.ndarray) -> np.ndarray:
        """(B, N) weight of each item (vertebra) in each resample, from the item's study."""
        return self.counts[:, np.asarray(study_index, np.intp)]


def study_resamples(n_studies: int, n_resamples: int, seed: int) -> StudyResamples | None:
    """Draw ``n_resamples`` resamples of ``n_studies`` studies; None when ``n_resamples`` is 0 (no intervals)."""
    if n_resamples < 0:
        raise InputError(f"the number of bootstrap resamples must be >= 0, not {n_resamples}")
    if n_resamples == 0 or n_studies == 0:
        return None
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_studies, size=(n_resamples, n_studies))
    counts = np.zeros((n_resamples, n_studies), np.float64)
    np.add.at(counts, (np.arange(n_resamples)[:, None], drawn), 1.0)
    return StudyResamples(counts, int(seed))


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> Interval | None:
    """The percentile interval over the finite replicates (NaN marks a resample where the figure is undefined)."""
    defined = np.asarray(replicates, np.float64)
    defined = defined[np.isfinite(defined)]
    if defined.size == 0:
        return None
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return Interval(float(low), float(high), int(defined.size))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def weighted_auc(truth: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count 1/2) for each row of ``weights`` (B, N); NaN where a class has no weight."""
    truth = np.asarray(truth, bool)
    score = np.asarray(score, np.float64)
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    if score.size == 0:
        return np.full(weights.shape[0], np.nan)
    order = np.argsort(score, kind="stable")
    ordered = score[order]
    ends = np.append(np.flatnonzero(np.diff(ordered) != 0), ordered.size - 1)  # last index of each tie group
    w = weights[:, order]
    t = truth[order].astype(np.float64)

    def per_group(values: np.ndarray) -> np.ndarray:
        cum = np.cumsum(values, axis=1)[:, ends]
        return np.diff(cum, axis=1, prepend=0.0)

    pos = per_group(w * t)
    neg = per_group(w * (1.0 - t))
    neg_below = np.cumsum(neg, axis=1) - neg
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    return _ratio(wins, pos.sum(axis=1) * neg.sum(axis=1))


def roc_auc(truth: Sequence[bool] | np.ndarray, score: Sequence[float] | np.ndarray) -> float | None:
    """ROC AUC of one set (Mann-Whitney, ties 1/2); None when positives or negatives are absent."""
    value = float(weighted_auc(np.asarray(truth), np.asarray(score), np.ones((1, len(truth))))[0])
    return None if math.isnan(value) else value


def weighted_binary(
    truth: np.ndarray, decision: np.ndarray, score: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Each figure of :data:`BINARY_FIGURES` and the four counts, for each row of ``weights``; NaN = undefined."""
    t = np.asarray(truth, bool).astype(np.float64)
    d = np.asarray(decision, bool).astype(np.float64)
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    tp = weights @ (t * d)
    fn = weights @ (t * (1.0 - d))
    fp = weights @ ((1.0 - t) * d)
    tn = weights @ ((1.0 - t) * (1.0 - d))
    return {
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "auc": weighted_auc(truth, score, weights),
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
    }


@dataclass(frozen=True)
class RocCurve:
    """ROC points, one per distinct score, thresholds descending; the first threshold is +inf (the origin)."""

    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    thresholds: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        # JSON has no infinity: the origin's threshold is written as null ("above every score").
        return {
            "fpr": list(self.fpr),
            "tpr": list(self.tpr),
            "thresholds": [None if math.isinf(x) else x for x in self.thresholds],
        }


def roc_curve(truth: np.ndarray, score: np.ndarray) -> RocCurve | None:
    """Every ROC point (flag score >= threshold); None when positives or negatives are absent."""
    truth = np.asarray(truth, bool)
    score = np.asarray(score, np.float64)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(-score, kind="stable")
    ordered = score[order]
    ends = np.append(np.flatnonzero(np.diff(ordered) != 0), ordered.size - 1)
    tps = np.cumsum(truth[order])[ends]
    fps = (ends + 1) - tps
    return RocCurve(
        fpr=(0.0, *(float(x) for x in fps / negatives)),
        tpr=(0.0, *(float(x) for x in tps / positives)),
        thresholds=(math.inf, *(float(x) for x in ordered[ends])),
    )


@dataclass(frozen=True)
class BinaryFigures:
    """A binary task's figures on a set. ``decision`` says in words how a vertebra was flagged."""

    task: str
    decision: str
    positives: int
    negatives: int
    tp: int
    fn: int
    tn: int
    fp: int
    accuracy: Figure
    sensitivity: Figure
    specificity: Figure
    ppv: Figure
    npv: Figure
    auc: Figure
    roc: RocCurve | None = None

    def figure(self, name: str) -> Figure:
        if name not in BINARY_FIGURES:
            raise KeyError(name)
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "decision": self.decision,
            "positives": self.positives,
            "negatives": self.negatives,
            "counts": {"tp": self.tp, "fn": self.fn, "tn": self.tn, "fp": self.fp},
            **{name: self.figure(name).to_dict() for name in BINARY_FIGURES},
            "roc": self.roc.to_dict() if self.roc else None,
        }


def _figure(name: str, point: float, replicates: np.ndarray | None) -> Figure:
    if math.isnan(point):
        return Figure(None, None, UNDEFINED_BECAUSE[name])
    return Figure(point, percentile_interval(replicates) if replicates is not None else None)


def binary_figures(
    task: str,
    decision_text: str,
    truth: np.ndarray,
    decision: np.ndarray,
    score: np.ndarray,
    study_index: np.ndarray,
    resamples: StudyResamples | None,
    *,
    with_roc: bool = True,
) -> tuple[BinaryFigures, dict[str, np.ndarray]]:
    """A task's figures with intervals, and the bootstrap replicates of each figure (for paired route comparison)."""
    truth = np.asarray(truth, bool)
    decision = np.asarray(decision, bool)
    score = np.asarray(score, np.float64)
    point = {k: float(v[0]) for k, v in weighted_binary(truth, decision, score, np.ones((1, truth.size))).items()}
    reps: dict[str, np.ndarray] = {}
    if resamples is not None:
        drawn = weighted_binary(truth, decision, score, resamples.weights(study_index))
        reps = {name: drawn[name] for name in BINARY_FIGURES}
    figures = {name: _figure(name, point[name], reps.get(name)) for name in BINARY_FIGURES}
    result = BinaryFigures(
        task=task,
        decision=decision_text,
        positives=int(truth.sum()),
        negatives=int((~truth).sum()),
        tp=round(point["tp"]),
        fn=round(point["fn"]),
        tn=round(point["tn"]),
        fp=round(point["fp"]),
        roc=roc_curve(truth, score) if with_roc else None,
        **figures,
    )
    return result, reps


@dataclass(frozen=True)
class ConfusionMatrix:
    """Rows: the labelled class; columns: the predicted class (argmax; a missed vertebra counts as normal).

    ``missed[i]`` says how many of row ``i``'s ``normal`` column were missed by the detector rather than classified.
    """

    classes: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    missed: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": "labelled class",
            "columns": "predicted class (argmax; missed vertebrae count as normal)",
            "classes": list(self.classes),
            "counts": [list(r) for r in self.counts],
            "missed": dict(zip(self.classes, self.missed)),
        }


def confusion_matrix(
    truth: np.ndarray, predicted: np.ndarray, detected: np.ndarray, classes: Sequence[str]
) -> ConfusionMatrix:
    """Counts of (labelled, predicted) class indices."""
    k = len(classes)
    counts = np.zeros((k, k), np.int64)
    np.add.at(counts, (np.asarray(truth, np.intp), np.asarray(predicted, np.intp)), 1)
    missed = np.bincount(np.asarray(truth, np.intp)[~np.asarray(detected, bool)], minlength=k)
    return ConfusionMatrix(
        tuple(classes), tuple(tuple(int(x) for x in r) for r in counts), tuple(int(x) for x in missed)
    )


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold on a score that reaches ``target_sensitivity`` and the specificity it costs.

    ``threshold`` is None when the target cannot be reached (``note`` says why: no positives, or too many positives
    missed by the detector for any threshold to find them).
    """

    score: str
    target_sensitivity: float
    threshold: float | None
    sensitivity: Figure
    specificity: Figure
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "target_sensitivity": self.target_sensitivity,
            "threshold": self.threshold,
            "reachable": self.threshold is not None,
            "sensitivity": self.sensitivity.to_dict(),
            "specificity": self.specificity.to_dict(),
            "note": self.note,
        }


def threshold_for_sensitivity(
    truth: np.ndarray, score: np.ndarray, detected: np.ndarray, target: float
) -> tuple[float | None, str]:
    """The highest threshold (flag = detected and score >= threshold) whose sensitivity is >= ``target``."""
    if not 0.0 < target <= 1.0:
        raise InputError(f"the target sensitivity must be in (0, 1], not {target}")
    truth = np.asarray(truth, bool)
    score = np.asarray(score, np.float64)
    detected = np.asarray(detected, bool)
    positives = int(truth.sum())
    if positives == 0:
        return None, "no positives in the set: no sensitivity to reach"
    needed = math.ceil(target * positives - 1e-9)
    found = np.sort(score[truth & detected])[::-1]
    if needed > found.size:
        missed = positives - found.size
        return None, (
            f"unreachable: {missed} of {positives} positives were missed by the detector, so no threshold flags more "
            f"than {found.size} ({found.size / positives:.3f})"
        )
    kth = float(found[needed - 1])
    below = score[detected & (score < kth)]
    if below.size:
        return (kth + float(below.max())) / 2.0, f"halfway between {kth:.6g} and the next lower score {below.max():.6g}"
    return kth, "at the lowest score in the set"


def operating_point_for(
    score_name: str,
    truth: np.ndarray,
    score: np.ndarray,
    detected: np.ndarray,
    target: float,
    study_index: np.ndarray,
    resamples: StudyResamples | None,
) -> tuple[OperatingPoint, dict[str, np.ndarray]]:
    """The operating point for ``target`` sensitivity with the intervals of its sensitivity and specificity."""
    threshold, note = threshold_for_sensitivity(truth, score, detected, target)
    if threshold is None:
        undefined = Figure(None, None, "target not reachable")
        return OperatingPoint(score_name, float(target), None, undefined, undefined, note), {}
    decision = np.asarray(detected, bool) & (np.asarray(score, np.float64) >= threshold)
    figures, reps = binary_figures("operating point", "", truth, decision, score, study_index, resamples)
    point = OperatingPoint(score_name, float(target), float(threshold), figures.sensitivity, figures.specificity, note)
    return point, {k: reps[k] for k in ("sensitivity", "specificity") if k in reps}


def replicate_names(prefix: str, replicates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Prefix replicate names (``fracture.sensitivity``) for one flat namespace."""
    return {f"{prefix}.{name}": values for name, values in replicates.items()}
