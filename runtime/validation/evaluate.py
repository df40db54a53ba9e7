"""One route's predictions on a labelled set -> every figure of the study's table, with intervals.

Tasks, per labelled vertebra (matched as :mod:`olvf.runtime.validation.matching` says; a missed vertebra is normal
with p(fresh) = 0 and is never flagged):

- ``fracture``: fracture (old or fresh) vs normal. Decision: the argmax class is old or fresh. Score (ROC):
  p(old) + p(fresh).
- ``fresh``: fresh vs the rest (normal or old), **the MRI decision**: flagged when p(fresh) >= the operating point,
  as ``olvf-infer`` decides. Score: p(fresh).
- ``fresh_argmax``: fresh vs the rest by the argmax class, the way a 3-class study table usually reads.
- ``study_mri``: per study, MRI recommended (any vertebra found on the film, labelled or not, with p(fresh) >= the
  operating point) vs any labelled fresh vertebra. Score: the study's highest p(fresh). A failed study is not
  recommended.

Plus the 3-class confusion matrix (argmax), per-level figures for ``fracture`` and ``fresh``, detection figures on
studies with labelled boxes, vertebrae missed, and, when a target sensitivity is given, the operating point on p(fresh)
that reaches it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from olvf.errors import InputError
from olvf.runtime.validation.detection_metrics import DetectionFigures, detection_figures
from olvf.runtime.validation.labels import CLASSES, LEVELS, LabelledSet
from olvf.runtime.validation.matching import StudyOutcome, VertebraOutcome, match_study
from olvf.runtime.validation.metrics import (
    BINARY_FIGURES,
    CONFIDENCE,
    BinaryFigures,
    ConfusionMatrix,
    Figure,
    OperatingPoint,
    binary_figures,
    confusion_matrix,
    operating_point_for,
    replicate_names,
    study_resamples,
)
from olvf.runtime.validation.predictions import StudyPrediction

TASKS: tuple[str, ...] = ("fracture", "fresh", "fresh_argmax", "study_mri")
LEVEL_TASKS: tuple[str, ...] = ("fracture", "fresh")
MISSED_RULE = (
    "vertebrae the detector missed count against sensitivity: a missed vertebra is scored as predicted normal "
    "with p(fresh) = 0, as the ER would meet it, and a study that failed to read has all its vertebrae missed"
)


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int
    seed: int
    confidence: float = CONFIDENCE
    method: str = "percentile"
    unit: str = "study"

    def to_dict(self) -> dict[str, Any]:
        return {
            "resamples": self.resamples,
            "seed": self.seed,
            "confidence": self.confidence,
            "method": self.method,
            "unit": self.unit,
            "undefined_resamples": "left out (e.g. no positive drawn); each interval says how many were used",
        }


@dataclass(frozen=True)
class LevelFigures:
    level: str
    vertebrae: int
    fracture: BinaryFigures
    fresh: BinaryFigures

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "vertebrae": self.vertebrae,
            **{t: getattr(self, t).to_dict() for t in LEVEL_TASKS},
        }


@dataclass(frozen=True)
class StudyDecision:
    """One study as the ER sees it: MRI or not, and whether a fresh fracture was labelled."""

    key: str
    fresh_labelled: bool
    mri_recommended: bool
    max_p_fresh: float
    vertebrae_found: int
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.key,
            "fresh_labelled": self.fresh_labelled,
            "mri_recommended": self.mri_recommended,
            "max_p_fresh": self.max_p_fresh,
            "vertebrae_found": self.vertebrae_found,
            "error": self.error,
        }


@dataclass(frozen=True, eq=False)
class ValidationResult:
    """Every figure of one route on one labelled set. ``replicates`` holds each figure's bootstrap values (NaN where
    undefined), under the names of :meth:`figures`, for the paired route comparison; it is not reported."""

    set_source: str
    composition: Mapping[str, Any]
    operating_point: float
    bootstrap: BootstrapSettings
    fracture: BinaryFigures
    fresh: BinaryFigures
    fresh_argmax: BinaryFigures
    study_mri: BinaryFigures
    confusion: ConfusionMatrix
    levels: tuple[LevelFigures, ...]
    detection: DetectionFigures | None
    detection_note: str
    suggested_operating_point: OperatingPoint | None
    vertebrae: tuple[VertebraOutcome, ...]
    studies: tuple[StudyDecision, ...]
    replicates: Mapping[str, np.ndarray] = field(repr=False)
    #: studies of the set given (0: not counted, as when evaluate is called directly), and those the route did
    #: not assess, with the reason: they are not in the figures above
    studies_offered: int = 0
    not_assessed: tuple[tuple[str, str], ...] = ()

    @property
    def not_assessed_rate(self) -> float | None:
        return len(self.not_assessed) / self.studies_offered if self.studies_offered else None

    @property
    def missed(self) -> tuple[VertebraOutcome, ...]:
        return tuple(v for v in self.vertebrae if not v.detected)

    @property
    def failed(self) -> tuple[StudyDecision, ...]:
        return tuple(s for s in self.studies if s.error is not None)

    def task(self, name: str) -> BinaryFigures:
        if name not in TASKS:
            raise KeyError(name)
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """Every figure as plain JSON types (no NaN or infinity: undefined figures are null with the reason)."""
        return {
            "set": self.set_source,
            "composition": dict(self.composition),
            "operating_point": self.operating_point,
            "bootstrap": self.bootstrap.to_dict(),
            "missed_rule": MISSED_RULE,
            "tasks": {name: self.task(name).to_dict() for name in TASKS},
            "confusion_matrix": self.confusion.to_dict(),
            "levels": [lv.to_dict() for lv in self.levels],
            "detection": self.detection.to_dict() if self.detection else None,
            "detection_note": self.detection_note,
            "suggested_operating_point": (
                self.suggested_operating_point.to_dict() if self.suggested_operating_point else None
            ),
            "missed": {
                "count": len(self.missed),
                "of": len(self.vertebrae),
                "by_class": dict(zip(self.confusion.classes, self.confusion.missed)),
            },
            "failed_studies": [{"study": s.key, "error": s.error} for s in self.failed],
            "not_assessed": {
                "count": len(self.not_assessed),
                "of": self.studies_offered,
                "rate": self.not_assessed_rate,
                "note": "studies without a verdict (outside the bundle's intended use): not in the figures",
                "studies": [{"study": key, "reason": reason} for key, reason in self.not_assessed],
            },
            "studies": [s.to_dict() for s in self.studies],
            "vertebrae": [v.to_dict() for v in self.vertebrae],
        }

    def figures(self) -> dict[str, Figure]:
        """Every figure with an interval, by a flat name: ``fresh.sensitivity``, ``level.L2.fracture.auc``,
        ``detection.map50``, ``operating_point.specificity``."""
        out: dict[str, Figure] = {}
        for task in TASKS:
            for name in BINARY_FIGURES:
                out[f"{task}.{name}"] = self.task(task).figure(name)
        for lv in self.levels:
            for task in LEVEL_TASKS:
                for name in BINARY_FIGURES:
                    out[f"level.{lv.level}.{task}.{name}"] = getattr(lv, task).figure(name)
        if self.detection is not None:
            out["detection.map50"] = self.detection.map50
            out["detection.map50_95"] = self.detection.map50_95
            out["detection.levels_named_right"] = self.detection.levels_named_right
        if self.studies_offered:
            out["applicability.not_assessed_rate"] = Figure(self.not_assessed_rate)
        if self.suggested_operating_point is not None and self.suggested_operating_point.threshold is not None:
            out["operating_point.sensitivity"] = self.suggested_operating_point.sensitivity
            out["operating_point.specificity"] = self.suggested_operating_point.specificity
        return out


def _check_keys(labelled: LabelledSet, predictions: Mapping[str, StudyPrediction]) -> None:
    missing = [k for k in labelled.keys if k not in predictions]
    extra = sorted(set(predictions) - set(labelled.keys))
    if missing or extra:
        raise ValueError(
            f"predictions do not cover the labelled set: missing {missing[:5]}, not in the set {extra[:5]}"
        )
    for key, p in predictions.items():
        if p.key != key:
            raise ValueError(f"prediction filed under {key!r} is for study {p.key!r}")


def evaluate(
    labelled: LabelledSet,
    predictions: Mapping[str, StudyPrediction],
    *,
    operating_point: float,
    target_sensitivity: float | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
) -> ValidationResult:
    """Score one route's ``predictions`` (one per study, under :attr:`LabelledStudy.key`) against ``labelled``.

    ``operating_point`` is the threshold on p(fresh) the MRI decision uses (the bundle's stored one);
    ``target_sensitivity`` asks for the operating point reaching that sensitivity of fresh vs rest;
    ``bootstrap`` resamples of the studies (0: no intervals) drawn from ``seed``.
    """
    if not 0.0 <= operating_point <= 1.0:
        raise InputError(f"the operating point is a probability in [0, 1], not {operating_point}")
    _check_keys(labelled, predictions)
    outcomes: list[StudyOutcome] = [match_study(s, predictions[s.key]) for s in labelled.studies]
    vertebrae = tuple(v for o in outcomes for v in o.vertebrae)
    study_index = np.array([i for i, o in enumerate(outcomes) for _ in o.vertebrae], np.intp)
    truth = np.array([CLASSES.index(v.label) for v in vertebrae], np.intp)
    probs = np.array([v.probabilities for v in vertebrae], np.float64).reshape(-1, len(CLASSES))
    detected = np.array([v.detected for v in vertebrae], bool)
    predicted = np.argmax(probs, axis=1)  # missed vertebrae carry (1, 0, 0): normal
    fresh, old, normal = CLASSES.index("fresh"), CLASSES.index("old"), CLASSES.index("normal")
    p_fresh = probs[:, fresh]
    p_fracture = probs[:, old] + probs[:, fresh]
    resamples = study_resamples(len(outcomes), bootstrap, seed)
    replicates: dict[str, np.ndarray] = {}

    Task = tuple[np.ndarray, np.ndarray, np.ndarray]  # truth, decision, score per vertebra
    fracture_args: Task = (truth != normal, predicted != normal, p_fracture)
    fresh_args: Task = (truth == fresh, detected & (p_fresh >= operating_point), p_fresh)
    fracture_text = "argmax class is old or fresh; score p(old) + p(fresh)"
    fresh_text = f"p(fresh) >= {operating_point:g} (the MRI decision); score p(fresh)"
    results: dict[str, BinaryFigures] = {}
    tasks: tuple[tuple[str, str, Task], ...] = (
        ("fracture", fracture_text, fracture_args),
        ("fresh", fresh_text, fresh_args),
        ("fresh_argmax", "argmax class is fresh; score p(fresh)", (truth == fresh, predicted == fresh, p_fresh)),
    )
    for name, text, args in tasks:
        results[name], reps = binary_figures(name, text, *args, study_index, resamples)
        replicates.update(replicate_names(name, reps))

    decisions = _study_decisions(outcomes, labelled, operating_point)
    study_truth = np.array([d.fresh_labelled for d in decisions], bool)
    study_flag = np.array([d.mri_recommended for d in decisions], bool)
    study_score = np.array([d.max_p_fresh for d in decisions], np.float64)
    results["study_mri"], reps = binary_figures(
        "study_mri",
        f"any vertebra found with p(fresh) >= {operating_point:g}; score the study's highest p(fresh)",
        study_truth,
        study_flag,
        study_score,
        np.arange(len(decisions)),
        resamples,
    )
    replicates.update(replicate_names("study_mri", reps))

    levels = []
    level_of = np.array([v.level for v in vertebrae])
    for level in LEVELS:
        at = level_of == level
        if not at.any():
            continue
        per_task = {}
        for name, text, args in tasks[:2]:
            truth_at, decision_at, score_at = (a[at] for a in args)
            per_task[name], reps = binary_figures(
                name, text, truth_at, decision_at, score_at, study_index[at], resamples, with_roc=False
            )
            replicates.update(replicate_names(f"level.{level}.{name}", reps))
        levels.append(LevelFigures(level, int(at.sum()), per_task["fracture"], per_task["fresh"]))

    detection, detection_note = None, ""
    scored = [(i, s, o) for i, (s, o) in enumerate(zip(labelled.studies, outcomes)) if s.has_boxes and s.vertebrae]
    boxless_predictions = any(p.box is None for o in outcomes for p in o.predictions)
    if not scored:
        detection_note = "no study has a box for every labelled vertebra: detection not scored"
    elif boxless_predictions:
        detection_note = "the route reported vertebrae without boxes (a bundle without detector): detection not scored"
    else:
        detection, reps = detection_figures(scored, resamples)
        replicates.update(replicate_names("detection", reps))
        detection_note = f"scored on {len(scored)} of {len(outcomes)} studies (those with every vertebra boxed)"

    suggested = None
    if target_sensitivity is not None:
        suggested, reps = operating_point_for(
            "p(fresh)", truth == fresh, p_fresh, detected, target_sensitivity, study_index, resamples
        )
        replicates.update(replicate_names("operating_point", reps))

    return ValidationResult(
        set_source=str(labelled.source),
        composition=labelled.composition(),
        operating_point=float(operating_point),
        bootstrap=BootstrapSettings(resamples.n if resamples else 0, int(seed)),
        fracture=results["fracture"],
        fresh=results["fresh"],
        fresh_argmax=results["fresh_argmax"],
        study_mri=results["study_mri"],
        confusion=confusion_matrix(truth, predicted, detected, CLASSES),
        levels=tuple(levels),
        detection=detection,
        detection_note=detection_note,
        suggested_operating_point=suggested,
        vertebrae=vertebrae,
        studies=tuple(decisions),
        replicates=replicates,
    )


def _study_decisions(outcomes: list[StudyOutcome], labelled: LabelledSet, threshold: float) -> list[StudyDecision]:
    out = []
    for outcome, study in zip(outcomes, labelled.studies):
        found = [p.p_fresh for p in outcome.predictions]
        top = max(found, default=0.0)
        out.append(
            StudyDecision(
                key=outcome.key,
                fresh_labelled=any(v.label == "fresh" for v in study.vertebrae),
                mri_recommended=outcome.error is None and any(p >= threshold for p in found),
                max_p_fresh=float(top),
                vertebrae_found=len(outcome.predictions),
                error=outcome.error,
            )
        )
    return out
