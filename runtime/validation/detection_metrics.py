"""Detection figures where boxes are labelled: mAP50, mAP50-95, vertebrae missed, levels named right.

Definitions:

- One class, *vertebral body*: a box is right when it finds a labelled body, whatever level the detector named it
  (naming is scored apart as "levels named right"). The study's single-class detector is scored the same way.
- Scored studies: those whose every labelled vertebra has a box. A prediction that matches no labelled box is a
  false positive, so label every vertebra T12-L5 visible on a scored film (or none of its boxes).
- Matching at each IoU threshold t in 0.50, 0.55, ..., 0.95: within a study, predictions in descending detector score
  each claim the unclaimed labelled box they overlap most, and are true positives when that IoU is >= t (COCO's
  greedy rule, as ultralytics' ``match_predictions``).
- AP (:func:`coco_ap`): all scored studies' predictions in descending score (stable), cumulative precision and
  recall, the precision envelope (running maximum from high recall down), then **COCO's 101-point interpolation**
  (pycocotools): at each recall 0, 0.01, ..., 1 the envelope's precision at the first point reaching that recall
  (0 where recall never reaches it), averaged. A perfect detector scores 1.
- mAP50 is the AP at t = 0.5; mAP50-95 the mean of the ten APs.
- Also reported, without intervals, as YOLO training logs compute them (:func:`ultralytics_ap`, ultralytics
  ``compute_ap``, YOLOv5 alike): the same envelope sampled at the 101 recalls by linear interpolation with a drop to
  precision 0 at the highest recall, integrated by the trapezoid rule. The drop costs the last 1/200, so a perfect
  detector scores 0.995 there: compare those with a YOLO run's figures (the study's 0.982 / 0.835), the COCO ones
  with anything else.

Bootstrap intervals resample the studies exactly as the classification figures do (same resamples, same seed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from olvf.runtime.validation.labels import LabelledStudy
from olvf.runtime.validation.matching import StudyOutcome, by_score, iou_matrix
from olvf.runtime.validation.metrics import Figure, StudyResamples, percentile_interval

IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def coco_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """AP as pycocotools: the precision envelope at the first point reaching each of 101 recalls, averaged."""
    recall = np.asarray(recall, np.float64)
    envelope = np.flip(np.maximum.accumulate(np.flip(np.asarray(precision, np.float64))))
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    return (
        float(np.where(at < recall.size, envelope[np.minimum(at, recall.size - 1)], 0.0).mean()) if recall.size else 0.0
    )


def ultralytics_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """AP as ultralytics ``compute_ap``: envelope, 101-point linear interpolation, trapezoid (perfect = 0.995)."""
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    mrec = np.concatenate(([0.0], recall, [recall[-1] if recall.size else 1.0], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    return float(np.trapezoid(np.interp(RECALL_POINTS, mrec, mpre), RECALL_POINTS))


def greedy_correct(pred_boxes: np.ndarray, pred_scores: np.ndarray, truth_boxes: np.ndarray) -> np.ndarray:
    """(P, T) true-positive flags of one study's predictions at each IoU threshold, in the predictions' given order."""
    pred_boxes = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    correct = np.zeros((pred_boxes.shape[0], len(IOU_THRESHOLDS)), bool)
    truth_boxes = np.asarray(truth_boxes, np.float64).reshape(-1, 4)
    if not pred_boxes.size or not truth_boxes.size:
        return correct
    thresholds = np.array(IOU_THRESHOLDS)
    iou = iou_matrix(truth_boxes, pred_boxes)  # (G, P)
    claimed = np.zeros((truth_boxes.shape[0], thresholds.size), bool)
    for j in np.argsort(-np.asarray(pred_scores, np.float64), kind="stable"):
        available = np.where(claimed, 0.0, iou[:, j, None])  # (G, T)
        k = available.argmax(0)
        hit = available[k, np.arange(thresholds.size)] >= thresholds
        correct[j] = hit
        claimed[k, np.arange(thresholds.size)] |= hit
    return correct


def weighted_ap(
    correct: np.ndarray,
    scores: np.ndarray,
    n_truth: np.ndarray,
    weights: np.ndarray,
    method: Callable[[np.ndarray, np.ndarray], float] = coco_ap,
) -> np.ndarray:
    """(B, T) AP for each row of ``weights`` (per prediction) with ``n_truth`` (B,) labelled boxes; NaN if none.

    A resample's AP is that of the resampled set: a prediction drawn twice counts twice in the cumulative counts.
    """
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    n_truth = np.atleast_1d(np.asarray(n_truth, np.float64))
    out = np.full((weights.shape[0], correct.shape[1]), np.nan)
    scored = np.flatnonzero(n_truth > 0)
    if correct.shape[0] == 0:
        out[scored] = 0.0
        return out
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    w = weights[scored][:, order]  # (B', P)
    for t in range(correct.shape[1]):
        c = correct[order, t].astype(np.float64)
        tpc = np.cumsum(w * c, axis=1)
        fpc = np.cumsum(w * (1.0 - c), axis=1)
        # Before the first drawn prediction both counts are 0: precision 0 there, which the envelope overrides.
        precision = np.where(tpc + fpc > 0, tpc / np.where(tpc + fpc > 0, tpc + fpc, 1.0), 0.0)
        recall = tpc / n_truth[scored, None]
        for row, b in enumerate(scored):
            out[b, t] = method(recall[row], precision[row])
    return out


@dataclass(frozen=True)
class DetectionFigures:
    """Detection on the studies whose vertebrae all have labelled boxes."""

    studies: int
    labelled: int
    predictions: int
    false_positives: int  # predictions matching no labelled box at IoU 0.5
    map50: Figure
    map50_95: Figure
    ap: tuple[float, ...]  # COCO AP per IoU threshold, on the whole scored set
    ultralytics_ap: tuple[float, ...]  # the same as YOLO logs compute it (no intervals)
    matched: int  # labelled boxes found at IoU >= 0.5 (the classification match)
    levels_named_right: Figure  # of the matched, the share whose predicted level is the labelled one
    named_right: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "studies": self.studies,
            "labelled_boxes": self.labelled,
            "predictions": self.predictions,
            "false_positives_iou50": self.false_positives,
            "map50": self.map50.to_dict(),
            "map50_95": self.map50_95.to_dict(),
            "ap_per_iou": dict(zip((f"{t:.2f}" for t in IOU_THRESHOLDS), self.ap)),
            "ap_interpolation": "COCO 101-point (pycocotools): envelope precision at each recall 0..1 step 0.01, mean",
            "ultralytics": {
                "map50": self.ultralytics_ap[0] if self.ultralytics_ap else None,
                "map50_95": float(np.mean(self.ultralytics_ap)) if self.ultralytics_ap else None,
                "ap_interpolation": "ultralytics compute_ap: 101-point linear interpolation, trapezoid (perfect 0.995)",
            },
            "matched_iou50": self.matched,
            "levels_named_right": self.levels_named_right.to_dict(),
            "named_right": self.named_right,
        }


def detection_figures(
    studies: Sequence[tuple[int, LabelledStudy, StudyOutcome]], resamples: StudyResamples | None
) -> tuple[DetectionFigures, dict[str, np.ndarray]]:
    """Detection figures for ``(study index in the set, labelled study, its outcome)`` of every scored study."""
    corrects, scores, owner, n_truth = [], [], [], []
    for index, labelled, outcome in studies:
        preds = outcome.predictions
        order = by_score(preds)
        boxes = np.array([preds[j].box for j in order], np.float64).reshape(-1, 4)
        conf = np.array([preds[j].score for j in order], np.float64)
        truth = np.array([v.box for v in labelled.vertebrae], np.float64).reshape(-1, 4)
        corrects.append(greedy_correct(boxes, conf, truth))
        scores.append(conf)
        owner.append(np.full(conf.size, index, np.intp))
        n_truth.append((index, truth.shape[0]))
    correct = np.concatenate(corrects) if corrects else np.zeros((0, len(IOU_THRESHOLDS)), bool)
    score = np.concatenate(scores) if scores else np.zeros(0)
    pred_study = np.concatenate(owner) if owner else np.zeros(0, np.intp)
    truth_study = np.array([i for i, n in n_truth for _ in range(n)], np.intp)

    ap = weighted_ap(correct, score, np.array([truth_study.size]), np.ones((1, score.size)))[0]
    yolo_ap = weighted_ap(correct, score, np.array([truth_study.size]), np.ones((1, score.size)), ultralytics_ap)[0]
    reps: dict[str, np.ndarray] = {}
    if resamples is not None:
        drawn = weighted_ap(correct, score, resamples.weights(truth_study).sum(axis=1), resamples.weights(pred_study))
        reps = {"map50": drawn[:, 0], "map50_95": drawn.mean(axis=1)}

    # Levels named right among the labelled boxes that the classification match found at IoU >= 0.5.
    matched = [
        (index, v.predicted_level == v.level)
        for index, _, outcome in studies
        for v in outcome.vertebrae
        if v.matched_by == "box"
    ]
    named = np.array([ok for _, ok in matched], bool)
    named_study = np.array([i for i, _ in matched], np.intp)
    named_point = float(named.mean()) if named.size else math.nan
    named_reps = None
    if resamples is not None and named.size:
        w = resamples.weights(named_study)
        with np.errstate(invalid="ignore", divide="ignore"):
            named_reps = np.where(w.sum(1) > 0, (w @ named.astype(np.float64)) / np.maximum(w.sum(1), 1e-300), np.nan)
        reps["levels_named_right"] = named_reps

    def figure(value: float, replicates: np.ndarray | None, why: str) -> Figure:
        if math.isnan(value):
            return Figure(None, None, why)
        return Figure(value, percentile_interval(replicates) if replicates is not None else None)

    result = DetectionFigures(
        studies=len(studies),
        labelled=int(truth_study.size),
        predictions=int(score.size),
        false_positives=int((~correct[:, 0]).sum()),
        map50=figure(float(ap[0]), reps.get("map50"), "no labelled boxes"),
        map50_95=figure(float(np.mean(ap)), reps.get("map50_95"), "no labelled boxes"),
        ap=tuple(float(a) for a in ap) if not np.isnan(ap).any() else (),
        ultralytics_ap=tuple(float(a) for a in yolo_ap) if not np.isnan(yolo_ap).any() else (),
        matched=int(named.size),
        levels_named_right=figure(named_point, named_reps, "no labelled box was found"),
        named_right=int(named.sum()),
    )
    return result, reps
