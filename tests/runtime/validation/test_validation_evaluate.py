"""From predictions to the study's table: matching, missed vertebrae against sensitivity, failed studies, tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from validation_fixtures import level_box, noisy_predictions, random_set

from olvf.errors import InputError
from olvf.runtime.validation.evaluate import evaluate
from olvf.runtime.validation.labels import LabelledSet, LabelledStudy, LabelledVertebra
from olvf.runtime.validation.predictions import PredictedVertebra, StudyPrediction

sklearn_metrics = pytest.importorskip(
    "sklearn.metrics", reason="scikit-learn checks the metrics: pip install '.[test]'"
)

FRESH = (0.05, 0.05, 0.9)
NORMAL = (0.9, 0.05, 0.05)


def one_study(*labels: tuple[str, str], boxes: bool = True) -> LabelledSet:
    vertebrae = tuple(
        LabelledVertebra(level, label, level_box(i) if boxes else None, i + 2)
        for i, (level, label) in enumerate(labels)
    )
    return LabelledSet(Path("labels.csv"), (LabelledStudy("a.dcm", Path("a.dcm"), vertebrae),))


def test_a_missed_fresh_vertebra_counts_against_sensitivity() -> None:
    labelled = one_study(("T12", "normal"), ("L1", "normal"), ("L2", "fresh"))
    found = (PredictedVertebra("T12", level_box(0), NORMAL, 0.9), PredictedVertebra("L1", level_box(1), NORMAL, 0.9))
    missed = evaluate(labelled, {"a.dcm": StudyPrediction("a.dcm", found)}, operating_point=0.5, bootstrap=0)
    assert missed.fresh.sensitivity.value == 0.0 and missed.fracture.sensitivity.value == 0.0
    assert [(v.level, v.label) for v in missed.missed] == [("L2", "fresh")]
    assert missed.confusion.counts[2] == (1, 0, 0) and missed.confusion.missed == (0, 0, 1)
    assert not missed.studies[0].mri_recommended
    # Found, the same vertebra is a true positive and the study goes to MRI.
    l2 = PredictedVertebra("L2", level_box(2), FRESH, 0.9)
    found_all = evaluate(labelled, {"a.dcm": StudyPrediction("a.dcm", (*found, l2))}, operating_point=0.5, bootstrap=0)
    assert found_all.fresh.sensitivity.value == 1.0 and found_all.studies[0].mri_recommended


def test_a_failed_study_has_all_its_vertebrae_missed_and_is_listed() -> None:
    labelled = random_set(6, seed=1)
    predictions = noisy_predictions(labelled, seed=1, skill=0.9)
    bad = labelled.studies[2].key
    predictions[bad] = StudyPrediction.failed(bad, "cannot decode JPEG Lossless: install pylibjpeg-libjpeg")
    result = evaluate(labelled, predictions, operating_point=0.5, bootstrap=0)
    assert [(s.key, s.error) for s in result.failed] == [(bad, predictions[bad].error)]
    assert {(v.study, v.level) for v in result.missed} == {(bad, v.level) for v in labelled.studies[2].vertebrae}
    assert not result.studies[2].mri_recommended
    assert result.to_dict()["failed_studies"] == [{"study": bad, "error": predictions[bad].error}]


def test_matching_by_box_needs_iou_half_and_by_level_without_boxes() -> None:
    labelled = one_study(("L1", "fresh"), ("L2", "normal"))
    x1, y1, x2, y2 = level_box(0)
    off = PredictedVertebra("L1", (x1 + 40, y1, x2 + 40, y2), FRESH, 0.9)  # IoU 60/140 < 0.5
    result = evaluate(labelled, {"a.dcm": StudyPrediction("a.dcm", (off,))}, operating_point=0.5, bootstrap=0)
    assert len(result.missed) == 2 and result.fresh.sensitivity.value == 0.0
    assert result.studies[0].mri_recommended  # the stray box is still on the film: the ER would send to MRI
    # Without labelled boxes the level name decides, so the same prediction is L1.
    boxless = one_study(("L1", "fresh"), ("L2", "normal"), boxes=False)
    named = evaluate(boxless, {"a.dcm": StudyPrediction("a.dcm", (off,))}, operating_point=0.5, bootstrap=0)
    assert [v.level for v in named.missed] == ["L2"] and named.vertebrae[0].matched_by == "level"
    assert named.fresh.sensitivity.value == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_the_study_table_matches_scikit_learn_on_the_matched_vertebrae(seed: int) -> None:
    labelled = random_set(40, seed=seed)
    predictions = noisy_predictions(labelled, seed=seed, skill=0.35, miss=0.05)
    result = evaluate(labelled, predictions, operating_point=0.4, bootstrap=200, seed=seed)
    truth = np.array([v.label for v in result.vertebrae])
    probs = np.array([v.probabilities for v in result.vertebrae])
    detected = np.array([v.detected for v in result.vertebrae])
    predicted = np.where(detected, probs.argmax(1), 0)
    assert (~detected).any()
    sk = sklearn_metrics
    fracture, pred_fracture = truth != "normal", predicted != 0
    assert result.fracture.accuracy.value == pytest.approx(sk.accuracy_score(fracture, pred_fracture))
    assert result.fracture.sensitivity.value == pytest.approx(sk.recall_score(fracture, pred_fracture))
    assert result.fracture.specificity.value == pytest.approx(sk.recall_score(fracture, pred_fracture, pos_label=False))
    assert result.fracture.auc.value == pytest.approx(
        sk.roc_auc_score(fracture, np.where(detected, probs[:, 1:].sum(1), 0))
    )
    fresh, p_fresh = truth == "fresh", np.where(detected, probs[:, 2], 0.0)
    assert result.fresh.sensitivity.value == pytest.approx(sk.recall_score(fresh, p_fresh >= 0.4))
    assert result.fresh.specificity.value == pytest.approx(sk.recall_score(fresh, p_fresh >= 0.4, pos_label=False))
    assert result.fresh.auc.value == pytest.approx(sk.roc_auc_score(fresh, p_fresh))
    assert result.fresh_argmax.sensitivity.value == pytest.approx(sk.recall_score(fresh, predicted == 2))
    labels = {"normal": 0, "old": 1, "fresh": 2}
    np.testing.assert_array_equal(
        result.confusion.counts, sk.confusion_matrix([labels[t] for t in truth], predicted, labels=[0, 1, 2])
    )
    l3 = np.array([v.level == "L3" for v in result.vertebrae])
    level = next(lv for lv in result.levels if lv.level == "L3")
    assert level.vertebrae == int(l3.sum())
    assert level.fresh.sensitivity.value == pytest.approx(sk.recall_score(fresh[l3], p_fresh[l3] >= 0.4))
    assert result.fresh.auc.interval.resamples == 200 and result.bootstrap.resamples == 200


def test_evaluate_is_reproducible_and_its_operating_point_reaches_the_target() -> None:
    labelled = random_set(50, seed=5)
    predictions = noisy_predictions(labelled, seed=5, skill=0.3)
    one = evaluate(labelled, predictions, operating_point=0.4, target_sensitivity=0.85, bootstrap=300, seed=9)
    two = evaluate(labelled, predictions, operating_point=0.4, target_sensitivity=0.85, bootstrap=300, seed=9)
    assert one.figures() == two.figures()
    op = one.suggested_operating_point
    assert op.threshold is not None and op.sensitivity.value >= 0.85
    at = evaluate(labelled, predictions, operating_point=op.threshold, bootstrap=0)
    assert at.fresh.sensitivity.value == op.sensitivity.value and at.fresh.specificity.value == op.specificity.value


def test_predictions_must_cover_exactly_the_set() -> None:
    labelled = random_set(3, seed=0)
    predictions = noisy_predictions(labelled, seed=0)
    key = labelled.studies[0].key
    del predictions[key]
    with pytest.raises(ValueError, match="missing"):
        evaluate(labelled, predictions, operating_point=0.5)
    with pytest.raises(InputError, match="operating point"):
        evaluate(labelled, noisy_predictions(labelled, seed=0), operating_point=1.5)


@pytest.mark.parametrize(
    "probabilities",
    [(0.5, 0.5), (0.2, 0.2, 0.2), (1.2, -0.1, -0.1), {"normal": 1.0, "old": 0.0}, (float("nan"), 0.5, 0.5)],
)
def test_predicted_probabilities_are_checked(probabilities) -> None:
    with pytest.raises(ValueError):
        PredictedVertebra("L1", None, probabilities)


def test_probabilities_by_name_are_put_in_class_order() -> None:
    v = PredictedVertebra("L1", (0, 0, 1, 1), {"fresh": 0.7, "normal": 0.1, "old": 0.2})
    assert v.probabilities == (0.1, 0.2, 0.7) and v.predicted_class == "fresh" and v.p_fresh == 0.7
