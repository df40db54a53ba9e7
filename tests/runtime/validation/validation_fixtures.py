"""Labelled sets and predictions made in memory for the validation tests (no images are read by validation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from olvf.runtime.validation.labels import CLASSES, LEVELS, LabelledSet, LabelledStudy, LabelledVertebra
from olvf.runtime.validation.predictions import PredictedVertebra, StudyPrediction


def level_box(i: int) -> tuple[float, float, float, float]:
    """Level ``i``'s box on a made-up film: 100 px wide bodies 80 px high, 100 px apart."""
    return 100.0, 100.0 + 100.0 * i, 200.0, 180.0 + 100.0 * i


def random_set(
    n_studies: int, seed: int, *, boxes: bool = True, p: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> LabelledSet:
    rng = np.random.default_rng(seed)
    studies = []
    for s in range(n_studies):
        vertebrae = tuple(
            LabelledVertebra(level, CLASSES[rng.choice(3, p=p)], level_box(i) if boxes else None, 2 + 6 * s + i)
            for i, level in enumerate(LEVELS)
        )
        studies.append(LabelledStudy(f"s{s:03d}.dcm", Path(f"s{s:03d}.dcm"), vertebrae))
    return LabelledSet(Path("labels.csv"), tuple(studies))


def noisy_predictions(
    labelled: LabelledSet, seed: int, *, skill: float = 0.5, miss: float = 0.0, jitter: float = 3.0
) -> dict[str, StudyPrediction]:
    """Probabilities leaning ``skill`` toward the truth, boxes jittered, a share ``miss`` of vertebrae not found."""
    rng = np.random.default_rng(seed)
    out = {}
    for study in labelled.studies:
        found = []
        for v in study.vertebrae:
            if rng.random() < miss:
                continue
            probs = (1.0 - skill) * rng.dirichlet([1.0, 1.0, 1.0])
            probs[v.class_index] += skill
            box = None if v.box is None else tuple(np.asarray(v.box) + rng.normal(0.0, jitter, 4))
            found.append(PredictedVertebra(v.level, box, probs / probs.sum(), float(rng.uniform(0.3, 1.0))))
        out[study.key] = StudyPrediction(study.key, tuple(found))
    return out
