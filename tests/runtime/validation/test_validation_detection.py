"""mAP50 / mAP50-95 on hand-made cases with known answers, and against ultralytics' own code where it is installed."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
from validation_fixtures import level_box, random_set

from olvf.runtime.validation.detection_metrics import IOU_THRESHOLDS, coco_ap, greedy_correct
from olvf.runtime.validation.evaluate import evaluate
from olvf.runtime.validation.labels import LEVELS
from olvf.runtime.validation.predictions import PredictedVertebra, StudyPrediction

NORMAL = (0.9, 0.05, 0.05)


def predictions_with(labelled, box_of, *, score_of=lambda s, i: 0.9 - 0.01 * i, level_of=lambda i: LEVELS[i]):
    return {
        s.key: StudyPrediction(
            s.key,
            tuple(PredictedVertebra(level_of(i), box_of(i), NORMAL, score_of(k, i)) for i in range(len(s.vertebrae))),
        )
        for k, s in enumerate(labelled.studies)
    }


def shifted(i: int, dx: float) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = level_box(i)
    return x1 + dx, y1, x2 + dx, y2


def test_perfect_boxes_give_map_one() -> None:
    labelled = random_set(5, seed=0)
    result = evaluate(labelled, predictions_with(labelled, level_box), operating_point=0.5, bootstrap=100, seed=0)
    d = result.detection
    assert d.map50.value == pytest.approx(1.0) and d.map50_95.value == pytest.approx(1.0)
    assert d.map50.interval.low == pytest.approx(1.0)
    assert d.matched == d.labelled == 30 and d.false_positives == 0
    assert d.levels_named_right.value == 1.0 and not result.missed


def test_boxes_at_a_known_iou_pass_the_thresholds_below_it_only() -> None:
    # A 100 px wide body shifted by d across has IoU (100 - d) / (100 + d); d = 28 / 1.72 gives IoU 0.72,
    # true at 0.50 ... 0.70 (five thresholds) and false at 0.75 ... 0.95.
    labelled = random_set(4, seed=1)
    d = 28.0 / 1.72
    result = evaluate(labelled, predictions_with(labelled, lambda i: shifted(i, d)), operating_point=0.5, bootstrap=0)
    assert result.vertebrae[0].iou == pytest.approx(0.72)
    assert result.detection.ap == pytest.approx((1.0,) * 5 + (0.0,) * 5)
    assert result.detection.map50.value == pytest.approx(1.0)
    assert result.detection.map50_95.value == pytest.approx(0.5)
    # Below IoU 0.5 a box finds nothing: every vertebra is missed and AP is 0.
    far = evaluate(labelled, predictions_with(labelled, lambda i: shifted(i, 40.0)), operating_point=0.5, bootstrap=0)
    assert far.detection.map50.value == 0.0 and len(far.missed) == len(far.vertebrae)
    assert far.detection.false_positives == far.detection.predictions


def test_a_false_positive_scored_below_every_true_box_costs_nothing_above_it_costs() -> None:
    labelled = random_set(2, seed=2)
    box = (500.0, 500.0, 600.0, 580.0)  # nowhere near a vertebra

    def with_extra(score: float):
        preds = predictions_with(labelled, level_box)
        first = labelled.studies[0].key
        extra = PredictedVertebra("V9", box, NORMAL, score)
        preds[first] = StudyPrediction(first, (*preds[first].vertebrae, extra))
        return evaluate(labelled, preds, operating_point=0.5, bootstrap=0).detection

    low, high = with_extra(0.01), with_extra(0.99)
    assert low.map50.value == pytest.approx(1.0) and low.false_positives == 1
    # Ranked first it makes precision 0 at recall 0, then 1/2, 2/3, ... 12/13: the envelope is 12/13 everywhere.
    assert high.map50.value == pytest.approx(12 / 13)
    assert high.map50.value == pytest.approx(coco_ap(np.arange(13) / 12, np.arange(13) / np.arange(1, 14)))


def test_levels_named_right_counts_boxes_found_under_another_name() -> None:
    labelled = random_set(3, seed=3)
    swapped = {0: "L1", 1: "T12"}  # the detector numbered T12 and L1 the other way round
    result = evaluate(
        labelled,
        predictions_with(labelled, level_box, level_of=lambda i: swapped.get(i, LEVELS[i])),
        operating_point=0.5,
        bootstrap=0,
    )
    assert result.detection.levels_named_right.value == pytest.approx(4 / 6)
    assert result.detection.map50.value == pytest.approx(1.0)  # detection itself is class-agnostic
    assert not result.missed  # matched by box, so classified as found


def test_detection_needs_boxes_in_labels_and_predictions() -> None:
    boxless = random_set(3, seed=4, boxes=False)
    result = evaluate(boxless, predictions_with(boxless, level_box), operating_point=0.5, bootstrap=0)
    assert result.detection is None and "no study has a box" in result.detection_note
    assert not result.missed  # matched by level name instead
    labelled = random_set(3, seed=4)
    crop_mode = evaluate(labelled, predictions_with(labelled, lambda i: None), operating_point=0.5, bootstrap=0)
    assert crop_mode.detection is None and "without boxes" in crop_mode.detection_note


def test_greedy_matching_gives_each_labelled_box_to_one_prediction() -> None:
    truth = np.array([[0, 0, 100, 100]], float)
    preds = np.array([[0, 0, 100, 100], [1, 1, 101, 101]], float)
    correct = greedy_correct(preds, np.array([0.5, 0.9]), truth)
    # The higher-scored duplicate claims the box; the exact one comes second and is a false positive.
    assert correct[1].all() and not correct[0].any()
    assert correct.shape == (2, len(IOU_THRESHOLDS))


@pytest.fixture(scope="module")
def ultralytics_metrics():
    if "YOLO_CONFIG_DIR" not in os.environ:  # ultralytics writes a settings file on import: keep it out of $HOME
        settings = tempfile.mkdtemp(prefix="olvf-test-yolo-")
        atexit.register(shutil.rmtree, settings, ignore_errors=True)
        os.environ["YOLO_CONFIG_DIR"] = settings
    os.environ.setdefault("YOLO_OFFLINE", "1")
    return pytest.importorskip(
        "ultralytics.utils.metrics", reason="ultralytics is the reference: pip install '.[export]'"
    )


@pytest.mark.parametrize("seed", range(4))
def test_map_matches_ultralytics_on_random_detections(ultralytics_metrics, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labelled = random_set(8, seed=seed)
    preds = {}
    for s in labelled.studies:
        found = []
        for i, _ in enumerate(s.vertebrae):
            if rng.random() < 0.85:
                box = tuple(np.asarray(level_box(i)) + rng.normal(0, 9, 4))
                found.append(PredictedVertebra(LEVELS[i], box, NORMAL, float(rng.random())))
        for _ in range(int(rng.integers(0, 3))):  # stray boxes
            x, y = rng.uniform(0, 600, 2)
            found.append(PredictedVertebra("V1", (x, y, x + 90, y + 70), NORMAL, float(rng.random())))
        preds[s.key] = StudyPrediction(s.key, tuple(found))
    ours = evaluate(labelled, preds, operating_point=0.5, bootstrap=0).detection

    # The reference: ultralytics' AP over the same per-prediction hits (computed here independently with
    # ultralytics' box_iou and a transcription of its greedy match_predictions).
    import torch

    tps, confs = [], []
    n_truth = 0
    for s in labelled.studies:
        truth = torch.tensor([v.box for v in s.vertebrae], dtype=torch.float64)
        n_truth += len(truth)
        found = sorted(preds[s.key].vertebrae, key=lambda p: -p.score)
        if not found:
            continue
        boxes = torch.tensor([p.box for p in found], dtype=torch.float64)
        iou = ultralytics_metrics.box_iou(truth, boxes).numpy()
        thresholds = np.array(IOU_THRESHOLDS)
        correct = np.zeros((len(found), thresholds.size), bool)
        matched = np.zeros((len(truth), thresholds.size), bool)
        for j in np.flatnonzero((iou >= thresholds.min()).any(0)):
            available = np.where(matched, 0, iou[:, j, None])
            k = available.argmax(0)
            correct[j] = available[k, range(thresholds.size)] >= thresholds
            matched[k, range(thresholds.size)] |= correct[j]
        tps.append(correct)
        confs += [p.score for p in found]
    tp, conf = np.concatenate(tps), np.array(confs)
    result = ultralytics_metrics.ap_per_class(tp, conf, np.zeros(conf.size), np.zeros(n_truth))
    ap = result[5][0]
    assert ours.ultralytics_ap == pytest.approx(tuple(ap), abs=1e-9)
    # COCO's step sampling and ultralytics' trapezoid read the same curve: within a few hundredths of each other.
    assert ours.map50.value == pytest.approx(ap[0], abs=0.03)


def test_ultralytics_ap_caps_a_perfect_detector_at_0995_coco_does_not() -> None:
    from olvf.runtime.validation.detection_metrics import ultralytics_ap

    recall, precision = np.array([0.5, 1.0]), np.array([1.0, 1.0])
    assert coco_ap(recall, precision) == 1.0
    assert ultralytics_ap(recall, precision) == pytest.approx(0.995)
    # Recall stuck at 0.5: COCO counts 51 of 101 recall points (0 .. 0.5).
    assert coco_ap(np.array([0.5]), np.array([1.0])) == pytest.approx(51 / 101)
