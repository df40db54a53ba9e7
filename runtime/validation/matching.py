"""Which predicted vertebra is which labelled one, and what a missed vertebra counts as.

Rule (one study at a time, one-to-one):

1. Labelled vertebrae **with a box** are matched by overlap: predictions are taken in descending detector score,
   each claims the unclaimed labelled box it overlaps most, if that IoU is >= 0.5 (the detector's level name does not
   matter here: a body found but numbered wrongly is still that body; naming is scored apart, "levels named right").
2. Labelled vertebrae **without a box** are matched by level name: the highest-scoring prediction left with that name.
3. A labelled vertebra that nothing matched is **missed**, and is scored as the ER would meet it: as if the cascade had
   called it normal with certainty (probabilities normal 1, old 0, fresh 0). It therefore counts against sensitivity
   and is never flagged for MRI. A study that failed to read or run has every labelled vertebra missed.

Predictions that match no labelled vertebra are not scored per vertebra (there is no truth for them); they are false
positives for detection (mAP) and they do take part in the study's MRI decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from olvf.runtime.validation.labels import CLASSES, Box, LabelledStudy
from olvf.runtime.validation.predictions import PredictedVertebra, StudyPrediction

MATCH_IOU = 0.5
MISSED_PROBABILITIES: tuple[float, float, float] = (1.0, 0.0, 0.0)


@dataclass(frozen=True)
class VertebraOutcome:
    """A labelled vertebra and what the route said about it."""

    study: str
    level: str
    label: str
    row: int
    matched_by: str | None  # "box", "level", or None when missed
    predicted_level: str | None
    iou: float | None
    probabilities: tuple[float, ...]  # in CLASSES order

    @property
    def detected(self) -> bool:
        return self.matched_by is not None

    @property
    def predicted_class(self) -> str:
        """Argmax (ties to the first class); a missed vertebra is normal."""
        return CLASSES[int(np.argmax(self.probabilities))]

    @property
    def p_fresh(self) -> float:
        return self.probabilities[2]

    @property
    def p_fracture(self) -> float:
        """p(old) + p(fresh): the score of fracture vs normal."""
        return self.probabilities[1] + self.probabilities[2]

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "level": self.level,
            "class": self.label,
            "row": self.row,
            "detected": self.detected,
            "matched_by": self.matched_by,
            "predicted_level": self.predicted_level,
            "iou": self.iou,
            "probabilities": dict(zip(CLASSES, self.probabilities)),
            "predicted_class": self.predicted_class,
        }


@dataclass(frozen=True)
class StudyOutcome:
    """One study matched: its labelled vertebrae's outcomes (level order) and the predictions nothing matched."""

    key: str
    vertebrae: tuple[VertebraOutcome, ...]
    unmatched: tuple[PredictedVertebra, ...]
    predictions: tuple[PredictedVertebra, ...]
    error: str | None


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two x1,y1,x2,y2 boxes (0 when either is empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4): (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def by_score(predictions: tuple[PredictedVertebra, ...]) -> list[int]:
    """Indices in descending detector score; equal scores keep the pipeline's order."""
    return sorted(range(len(predictions)), key=lambda i: -predictions[i].score)


def match_study(labelled: LabelledStudy, prediction: StudyPrediction) -> StudyOutcome:
    """Match one study's predictions to its labelled vertebrae (see the module docstring)."""
    preds = prediction.vertebrae
    truth = labelled.vertebrae
    claimed_by: dict[int, tuple[int, str, float | None]] = {}  # labelled index -> (prediction index, how, iou)
    used: set[int] = set()
    boxed = [i for i, v in enumerate(truth) if v.box is not None]
    boxed_preds = [j for j in by_score(preds) if preds[j].box is not None]
    if boxed and boxed_preds:
        ious = iou_matrix(np.array([preds[j].box for j in boxed_preds]), np.array([truth[i].box for i in boxed]))
        free = np.ones(len(boxed), bool)
        for row, j in enumerate(boxed_preds):
            candidates = np.where(free, ious[row], -1.0)
            k = int(np.argmax(candidates))
            if candidates[k] >= MATCH_IOU:
                free[k] = False
                claimed_by[boxed[k]] = (j, "box", float(candidates[k]))
                used.add(j)
    for i, v in enumerate(truth):
        if v.box is not None:
            continue
        named = [j for j in by_score(preds) if j not in used and preds[j].level == v.level]
        if named:
            claimed_by[i] = (named[0], "level", None)
            used.add(named[0])
    outcomes = []
    for i, v in enumerate(truth):
        if i in claimed_by:
            j, how, iou = claimed_by[i]
            p = preds[j]
            outcomes.append(VertebraOutcome(labelled.key, v.level, v.label, v.row, how, p.level, iou, p.probabilities))
        else:
            outcomes.append(
                VertebraOutcome(labelled.key, v.level, v.label, v.row, None, None, None, MISSED_PROBABILITIES)
            )
    unmatched = tuple(p for j, p in enumerate(preds) if j not in used)
    return StudyOutcome(labelled.key, tuple(outcomes), unmatched, preds, prediction.error)
