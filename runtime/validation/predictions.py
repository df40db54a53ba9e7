"""What a route (a bundle run on one backend and precision) hands to validation for each study.

The study pipeline produces these; validation never runs a model. Probabilities are the ensemble's, by class
name, so the bundle's class order cannot be mixed up: :data:`CLASSES` order inside.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from olvf.runtime.validation.labels import CLASSES, Box

PROBABILITY_SUM_TOLERANCE = 1e-2  # FP16 and TensorRT heads sum to 1 within 1e-3; anything further is a bug


@dataclass(frozen=True)
class PredictedVertebra:
    """One vertebra the route found: its level name, box (original pixels, x1,y1,x2,y2), detector score and the
    ensemble's probabilities in :data:`CLASSES` order (``normal, old, fresh``).

    ``probabilities`` may be given as a mapping by class name or as a sequence in class order; it is stored as a
    tuple of floats. A crop-mode bundle (no detector) has no box: ``box=None``, ``score=1``.
    """

    level: str
    box: Box | None
    probabilities: tuple[float, ...]  # len(CLASSES) values, checked below
    score: float = 1.0

    def __post_init__(self) -> None:
        probs: Any = self.probabilities  # a mapping or a sequence as given, a tuple once stored
        if isinstance(probs, Mapping):
            unknown = sorted(set(probs) - set(CLASSES))
            missing = [c for c in CLASSES if c not in probs]
            if unknown or missing:
                raise ValueError(
                    f"probabilities need exactly {', '.join(CLASSES)}; missing {missing}, unknown {unknown}"
                )
            values = tuple(float(probs[c]) for c in CLASSES)
        else:
            values = tuple(float(p) for p in np.asarray(probs, dtype=np.float64).ravel())
        if len(values) != len(CLASSES) or not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in values):
            raise ValueError(f"probabilities must be {len(CLASSES)} numbers in [0, 1], got {values}")
        if abs(sum(values) - 1.0) > PROBABILITY_SUM_TOLERANCE:
            raise ValueError(f"probabilities must sum to 1, got {values} (sum {sum(values):.4f})")
        object.__setattr__(self, "probabilities", values)
        if self.box is not None:
            box = tuple(float(v) for v in self.box)
            if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"box must be x1,y1,x2,y2 with x2 >= x1 and y2 >= y1, got {self.box}")
            object.__setattr__(self, "box", box)
        score = float(self.score)
        if not math.isfinite(score):
            raise ValueError(f"score must be finite, got {self.score}")
        object.__setattr__(self, "score", score)

    @property
    def predicted_class(self) -> str:
        """The argmax class; a tie goes to the first in class order (normal before old before fresh)."""
        return CLASSES[int(np.argmax(self.probabilities))]

    @property
    def p_fresh(self) -> float:
        return self.probabilities[CLASSES.index("fresh")]


@dataclass(frozen=True)
class StudyPrediction:
    """A route's result for one labelled study, under the study's key (:attr:`LabelledStudy.key`).

    ``error`` is the one-line reason a study could not be read or run (its labelled vertebrae then all count as
    missed, and the study is listed); ``vertebrae`` is then empty. ``not_assessed`` is the reason the
    intended-use gate gave no verdict (the study is left out of the figures and counted in the not-assessed rate).
    """

    key: str
    vertebrae: tuple[PredictedVertebra, ...] = ()
    error: str | None = None
    not_assessed: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "vertebrae", tuple(self.vertebrae))
        if (self.error is not None or self.not_assessed is not None) and self.vertebrae:
            raise ValueError(f"study {self.key}: a failed or not assessed study has no vertebrae")

    @classmethod
    def failed(cls, key: str, error: str) -> StudyPrediction:
        return cls(key, (), error)


def predictions_by_key(predictions: Sequence[StudyPrediction]) -> dict[str, StudyPrediction]:
    """Index a route's predictions by study key; a key given twice is a bug in the caller."""
    out: dict[str, StudyPrediction] = {}
    for p in predictions:
        if p.key in out:
            raise ValueError(f"study {p.key} has two predictions")
        out[p.key] = p
    return out
