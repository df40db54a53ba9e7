"""The clinical parity gate between routes, on constructed predictions whose differences are known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from validation_fixtures import noisy_predictions, random_set

from olvf.runtime.validation.compare import GateLimits, compare_routes
from olvf.runtime.validation.evaluate import evaluate
from olvf.runtime.validation.predictions import PredictedVertebra, StudyPrediction

OPERATING_POINT = 0.4


@pytest.fixture(scope="module")
def case():
    labelled = random_set(60, seed=21)
    return labelled, noisy_predictions(labelled, seed=21, skill=0.45)


def run(labelled, predictions, seed: int = 3, bootstrap: int = 300):
    return evaluate(labelled, predictions, operating_point=OPERATING_POINT, bootstrap=bootstrap, seed=seed)


def flip_one(predictions, key: str, index: int, probabilities) -> dict:
    flipped = dict(predictions)
    vertebrae = list(flipped[key].vertebrae)
    vertebrae[index] = dataclasses.replace(vertebrae[index], probabilities=probabilities)
    flipped[key] = StudyPrediction(key, tuple(vertebrae))
    return flipped


def test_identical_routes_pass_with_full_agreement(case) -> None:
    labelled, predictions = case
    comparison = compare_routes({"fp32": run(labelled, predictions), "fp16": run(labelled, predictions)})
    assert comparison.passed and not comparison.reasons
    d = comparison.differences[0]
    assert (d.reference, d.route) == ("fp32", "fp16")
    assert d.class_agreement == 1.0 and d.mri_agreement == 1.0 and not d.changed and not d.changed_studies
    for f in d.figures:
        assert not f.outside_reference_interval
        if f.change is not None:
            assert f.change == 0.0 and f.change_interval.low == 0.0 == f.change_interval.high  # paired resamples


def test_one_flipped_vertebra_is_counted_listed_and_judged(case) -> None:
    labelled, predictions = case
    # Find a normal vertebra called normal, with p(fresh) under the operating point, and make it fresh.
    reference = run(labelled, predictions)
    target = next(
        v
        for v in reference.vertebrae
        if v.label == "normal" and v.predicted_class == "normal" and v.p_fresh < OPERATING_POINT and v.detected
    )
    study = predictions[target.study]
    index = next(i for i, p in enumerate(study.vertebrae) if p.level == target.level)
    route = run(labelled, flip_one(predictions, target.study, index, (0.1, 0.1, 0.8)))
    comparison = compare_routes({"fp32": reference, "fp16": route})
    d = comparison.differences[0]
    n = len(reference.vertebrae)
    assert d.vertebrae == n == 360
    assert d.class_agreed == n - 1 and d.mri_agreed == n - 1
    assert d.class_agreement == pytest.approx((n - 1) / n)
    assert [(c.study, c.level, c.reference_class, c.route_class, c.reference_mri, c.route_mri) for c in d.changed] == [
        (target.study, target.level, "normal", "fresh", False, True)
    ]
    was = next(s for s in reference.studies if s.key == target.study)
    assert [c.study for c in d.changed_studies] == ([] if was.mri_recommended else [target.study])
    spec = next(f for f in d.figures if f.name == "fresh.specificity")
    assert spec.change == pytest.approx(-1 / sum(v.label != "fresh" for v in reference.vertebrae))
    assert spec.change_interval.high <= 0.0  # every resample that drew the study lost that vertebra's specificity
    # 359 / 360 = 99.7 % agreement passes the 99.5 % default; a stricter limit names the agreement.
    strict = compare_routes({"fp32": reference, "fp16": route}, limits=GateLimits(min_agreement=0.999, ungated=("",)))
    assert not strict.passed
    assert any("class agreement 0.9972 (1 of 360 vertebrae changed) is below 0.999" in r for r in strict.reasons)
    assert any("MRI decision agreement" in r for r in strict.reasons)


def test_a_figure_outside_the_reference_interval_fails_the_gate(case) -> None:
    labelled, predictions = case
    reference = run(labelled, predictions)
    # A route that calls every fresh vertebra normal: agreement may stay high, sensitivity cannot.
    worse = {
        key: StudyPrediction(
            key,
            tuple(
                dataclasses.replace(p, probabilities=(0.8, 0.15, 0.05)) if p.predicted_class == "fresh" else p
                for p in pred.vertebrae
            ),
        )
        for key, pred in predictions.items()
    }
    comparison = compare_routes({"fp32": reference, "int8": run(labelled, worse)}, limits=GateLimits(min_agreement=0.0))
    assert not comparison.passed
    moved = {f.name for f in comparison.differences[0].outside}
    assert {"fresh.sensitivity", "fresh_argmax.sensitivity"} <= moved
    assert any(r.startswith("int8: fresh.sensitivity") for r in comparison.reasons)
    lenient = compare_routes(
        {"fp32": reference, "int8": run(labelled, worse)},
        limits=GateLimits(min_agreement=0.0, figures_inside_reference_interval=False),
    )
    assert lenient.passed


def test_routes_must_be_evaluated_alike(case) -> None:
    labelled, predictions = case
    with pytest.raises(ValueError, match="bootstrapped differently"):
        compare_routes({"a": run(labelled, predictions, seed=1), "b": run(labelled, predictions, seed=2)})
    with pytest.raises(ValueError, match="needs bootstrap"):
        compare_routes({"a": run(labelled, predictions, bootstrap=0), "b": run(labelled, predictions, bootstrap=0)})
    with pytest.raises(ValueError, match="at least two"):
        compare_routes({"a": run(labelled, predictions)})
    other = random_set(60, seed=22)
    with pytest.raises(ValueError, match="same labelled set"):
        compare_routes({"a": run(labelled, predictions), "b": run(other, noisy_predictions(other, seed=1))})


def test_three_routes_compare_each_with_the_reference(case) -> None:
    labelled, predictions = case
    results = {name: run(labelled, predictions) for name in ("fp32", "fp16", "tensorrt")}
    comparison = compare_routes(results, reference="fp16")
    assert [(d.reference, d.route) for d in comparison.differences] == [("fp16", "fp32"), ("fp16", "tensorrt")]
    assert comparison.passed
    assert np.isfinite([d.class_agreement for d in comparison.differences]).all()


def test_a_vertebra_found_by_one_route_only_is_a_change(case) -> None:
    labelled, predictions = case
    key = labelled.studies[0].key
    dropped = dict(predictions)
    dropped[key] = StudyPrediction(key, predictions[key].vertebrae[1:])
    d = compare_routes({"a": run(labelled, predictions), "b": run(labelled, dropped)}).differences[0]
    lost = [c for c in d.changed if c.reference_detected and not c.route_detected]
    assert [(c.study, c.level) for c in lost] == [(key, predictions[key].vertebrae[0].level)]
    assert isinstance(predictions[key].vertebrae[0], PredictedVertebra)


def test_identical_routes_fail_on_a_set_that_cannot_measure_the_gate() -> None:
    """No fresh vertebra: fresh sensitivity is undefined on both routes. Agreement on nothing is no pass."""
    labelled = random_set(30, seed=4, p=(0.8, 0.2, 0.0))
    predictions = noisy_predictions(labelled, seed=4, skill=0.45)
    comparison = compare_routes({"fp32": run(labelled, predictions), "fp16": run(labelled, predictions)})
    assert not comparison.passed
    assert any(r.startswith("fp16: fresh.sensitivity not measurable on this set (no positives)") for r in
               comparison.reasons), comparison.reasons  # fmt: skip
    # what the set can measure is not blamed
    assert not any("fracture.sensitivity" in r for r in comparison.reasons)
