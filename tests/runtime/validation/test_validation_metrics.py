"""The arithmetic of validation against scikit-learn, and the study bootstrap against explicit resampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from olvf.errors import InputError
from olvf.runtime.validation.metrics import (
    binary_figures,
    confusion_matrix,
    operating_point_for,
    percentile_interval,
    roc_auc,
    roc_curve,
    study_resamples,
    threshold_for_sensitivity,
    weighted_auc,
    weighted_binary,
)

sklearn_metrics = pytest.importorskip(
    "sklearn.metrics", reason="scikit-learn checks the metrics: pip install '.[test]'"
)


def random_case(seed: int, n: int = 200, ties: bool = False, positives: float = 0.3):
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < positives
    score = np.clip(rng.normal(0.35 + 0.3 * truth, 0.2), 0.0, 1.0)
    if ties:
        score = np.round(score, 1)  # few distinct values: many ties across the classes
    decision = score >= 0.5
    return truth, decision, score


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_roc_curve_match_scikit_learn(seed: int, ties: bool) -> None:
    truth, _, score = random_case(seed, ties=ties)
    assert roc_auc(truth, score) == pytest.approx(sklearn_metrics.roc_auc_score(truth, score), abs=1e-12)
    fpr, tpr, thresholds = sklearn_metrics.roc_curve(truth, score, drop_intermediate=False)
    curve = roc_curve(truth, score)
    np.testing.assert_allclose(curve.fpr, fpr, atol=1e-12)
    np.testing.assert_allclose(curve.tpr, tpr, atol=1e-12)
    assert math.isinf(curve.thresholds[0]) and math.isinf(thresholds[0])
    np.testing.assert_allclose(curve.thresholds[1:], thresholds[1:])


@pytest.mark.parametrize(
    ("truth", "score", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),  # perfect
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),  # inverted
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),  # all tied: each pair counts 1/2
        ([0, 1, 1], [0.4, 0.4, 0.9], 0.75),  # one tie of two pairs
    ],
)
def test_auc_edge_cases(truth: list[int], score: list[float], expected: float) -> None:
    assert roc_auc(np.array(truth, bool), np.array(score)) == pytest.approx(expected)
    assert sklearn_metrics.roc_auc_score(truth, score) == pytest.approx(expected)


@pytest.mark.parametrize("truth", [[0, 0, 0], [1, 1, 1]])
def test_one_class_absent_leaves_auc_and_its_rate_undefined(truth: list[int]) -> None:
    truth_arr = np.array(truth, bool)
    score = np.array([0.2, 0.5, 0.9])
    assert roc_auc(truth_arr, score) is None and roc_curve(truth_arr, score) is None
    figures, _ = binary_figures("t", "", truth_arr, score >= 0.5, score, np.arange(3), study_resamples(3, 50, 0))
    assert figures.auc.value is None and figures.auc.interval is None
    assert figures.auc.undefined == "needs both positives and negatives"
    absent = "sensitivity" if not truth_arr.any() else "specificity"
    assert getattr(figures, absent).value is None and getattr(figures, absent).undefined in (
        "no positives",
        "no negatives",
    )
    assert figures.accuracy.value == pytest.approx(sklearn_metrics.accuracy_score(truth_arr, score >= 0.5))


@pytest.mark.parametrize("seed", range(6))
def test_decision_figures_match_scikit_learn(seed: int) -> None:
    truth, decision, score = random_case(seed)
    figures, _ = binary_figures("t", "", truth, decision, score, np.arange(truth.size), None)
    sk = sklearn_metrics
    assert figures.accuracy.value == pytest.approx(sk.accuracy_score(truth, decision))
    assert figures.sensitivity.value == pytest.approx(sk.recall_score(truth, decision))
    assert figures.specificity.value == pytest.approx(sk.recall_score(truth, decision, pos_label=False))
    assert figures.ppv.value == pytest.approx(sk.precision_score(truth, decision))
    assert figures.npv.value == pytest.approx(sk.precision_score(truth, decision, pos_label=False))
    tn, fp, fn, tp = sk.confusion_matrix(truth, decision).ravel()
    assert (figures.tn, figures.fp, figures.fn, figures.tp) == (tn, fp, fn, tp)
    assert figures.accuracy.interval is None  # no resamples, no intervals


def test_confusion_matrix_matches_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    truth, predicted = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    detected = rng.random(300) < 0.9
    predicted = np.where(detected, predicted, 0)  # missed vertebrae are predicted normal
    matrix = confusion_matrix(truth, predicted, detected, ("normal", "old", "fresh"))
    np.testing.assert_array_equal(matrix.counts, sklearn_metrics.confusion_matrix(truth, predicted, labels=[0, 1, 2]))
    assert matrix.missed == tuple(np.bincount(truth[~detected], minlength=3))
    # A class never labelled still has its row.
    empty = confusion_matrix(np.array([0, 0]), np.array([0, 2]), np.array([True, True]), ("normal", "old", "fresh"))
    assert empty.counts == ((1, 0, 1), (0, 0, 0), (0, 0, 0))


def test_weighted_figures_are_the_figures_of_the_repeated_set() -> None:
    """A bootstrap resample is a count per study: weighting each vertebra by it equals repeating the vertebrae."""
    truth, decision, score = random_case(11, n=60, ties=True)
    study = np.repeat(np.arange(20), 3)
    counts = np.random.default_rng(0).integers(0, 4, size=(5, 20)).astype(float)
    weights = counts[:, study]
    got = weighted_binary(truth, decision, score, weights)
    for b in range(5):
        repeat = weights[b].astype(int)
        t, d, s = np.repeat(truth, repeat), np.repeat(decision, repeat), np.repeat(score, repeat)
        assert got["auc"][b] == pytest.approx(sklearn_metrics.roc_auc_score(t, s))
        assert got["sensitivity"][b] == pytest.approx(sklearn_metrics.recall_score(t, d))
        assert got["accuracy"][b] == pytest.approx(sklearn_metrics.accuracy_score(t, d))


def test_bootstrap_resamples_studies_reproducibly() -> None:
    truth, decision, score = random_case(5, n=120)
    study = np.repeat(np.arange(30), 4)
    one, reps_one = binary_figures("t", "", truth, decision, score, study, study_resamples(30, 400, seed=7))
    two, reps_two = binary_figures("t", "", truth, decision, score, study, study_resamples(30, 400, seed=7))
    other, _ = binary_figures("t", "", truth, decision, score, study, study_resamples(30, 400, seed=8))
    assert one == two
    np.testing.assert_array_equal(reps_one["auc"], reps_two["auc"])
    assert one.auc.interval != other.auc.interval and one.sensitivity.interval != other.sensitivity.interval
    for name in ("accuracy", "sensitivity", "specificity", "auc"):
        figure = getattr(one, name)
        assert figure.interval.low <= figure.value <= figure.interval.high
        assert figure.interval.resamples == 400


def test_bootstrap_draws_whole_studies_and_uses_percentiles() -> None:
    resamples = study_resamples(10, 300, seed=1)
    assert resamples.counts.shape == (300, 10)
    np.testing.assert_array_equal(resamples.counts.sum(axis=1), 10)  # as many studies as the set has
    # Check the percentile interval against an explicit loop over the same draws.
    truth, decision, score = random_case(2, n=40)
    study = np.repeat(np.arange(10), 4)
    figures, reps = binary_figures("t", "", truth, decision, score, study, resamples)
    explicit = []
    for counts in resamples.counts.astype(int):
        keep = np.concatenate([np.flatnonzero(study == s) for s in range(10) for _ in range(counts[s])])
        explicit.append(sklearn_metrics.accuracy_score(truth[keep], decision[keep]))
    np.testing.assert_allclose(reps["accuracy"], explicit)
    assert figures.accuracy.interval.low == pytest.approx(np.percentile(explicit, 2.5))
    assert figures.accuracy.interval.high == pytest.approx(np.percentile(explicit, 97.5))


def test_resamples_without_a_positive_are_left_out_and_counted() -> None:
    # One positive vertebra, in study 0 only: sensitivity exists only in resamples that drew study 0.
    study = np.repeat(np.arange(12), 2)
    truth = np.zeros(24, bool)
    truth[0] = True
    score = np.linspace(0.0, 1.0, 24)
    resamples = study_resamples(12, 500, seed=3)
    figures, reps = binary_figures("t", "", truth, score > 0.5, score, study, resamples)
    with_study_0 = int((resamples.counts[:, 0] > 0).sum())
    assert 0 < with_study_0 < 500
    assert figures.sensitivity.interval.resamples == with_study_0
    assert figures.auc.interval.resamples == with_study_0
    assert np.isnan(reps["sensitivity"]).sum() == 500 - with_study_0
    assert figures.specificity.interval.resamples == 500
    assert percentile_interval(np.array([np.nan, np.nan])) is None


def test_no_bootstrap_means_no_intervals() -> None:
    assert study_resamples(10, 0, seed=1) is None
    with pytest.raises(InputError):
        study_resamples(10, -1, seed=1)


def test_operating_point_is_the_highest_threshold_reaching_the_target() -> None:
    truth, _, score = random_case(4, n=300)
    detected = np.ones(truth.size, bool)
    for target in (0.5, 0.8, 0.9, 0.95, 1.0):
        threshold, _ = threshold_for_sensitivity(truth, score, detected, target)
        flagged = score >= threshold
        assert sklearn_metrics.recall_score(truth, flagged) >= target
        # The same decisions as at the k-th positive's own score: it only sits in the gap below it.
        kth = score[truth & flagged].min()
        np.testing.assert_array_equal(flagged, score >= kth)
        assert not ((score < kth) & (score >= threshold)).any()
        # Raising it to the next positive score above the k-th loses sensitivity below the target.
        higher = score[truth & (score > kth)]
        if higher.size:
            assert sklearn_metrics.recall_score(truth, score >= higher.min()) < target
    point, reps = operating_point_for(
        "p", truth, score, detected, 0.9, np.arange(truth.size), study_resamples(300, 200, 0)
    )
    flagged = score >= point.threshold
    assert point.specificity.value == pytest.approx(sklearn_metrics.recall_score(truth, flagged, pos_label=False))
    assert point.sensitivity.interval is not None and set(reps) == {"sensitivity", "specificity"}


def test_operating_point_cannot_count_missed_positives() -> None:
    truth = np.array([1, 1, 1, 1, 0, 0], bool)
    score = np.array([0.9, 0.8, 0.0, 0.0, 0.1, 0.2])
    detected = np.array([1, 1, 0, 0, 1, 1], bool)  # two fresh vertebrae were never found
    assert threshold_for_sensitivity(truth, score, detected, 0.5)[0] == pytest.approx((0.8 + 0.2) / 2)
    threshold, note = threshold_for_sensitivity(truth, score, detected, 0.75)
    assert threshold is None and "2 of 4 positives were missed" in note
    point, _ = operating_point_for("p", truth, score, detected, 0.75, np.arange(6), None)
    assert point.threshold is None and point.sensitivity.value is None
    assert threshold_for_sensitivity(np.zeros(3, bool), score[:3], detected[:3], 0.9)[0] is None
    with pytest.raises(InputError, match="target sensitivity"):
        threshold_for_sensitivity(truth, score, detected, 1.5)


def test_weighted_auc_is_nan_without_both_classes_in_a_resample() -> None:
    truth = np.array([1, 0, 1, 0], bool)
    score = np.array([0.9, 0.1, 0.6, 0.4])
    weights = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]], float)
    got = weighted_auc(truth, score, weights)
    assert got[0] == 1.0 and np.isnan(got[1]) and np.isnan(got[2])
