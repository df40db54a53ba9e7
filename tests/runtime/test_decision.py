"""The study's verdict: when MRI is recommended, and a reason whose numbers never contradict it."""

from __future__ import annotations

import numpy as np
import pytest

from olvf.runtime.steps.decision import compared, mri_decision, state_targets, vertebra_states


def test_mri_is_recommended_at_or_over_the_operating_point_naming_the_level() -> None:
    levels = ("L1", "L2", "L3")
    decision = mri_decision(levels, np.array([0.1, 0.5, 0.3]), 0.5)
    assert decision.recommended is True and decision.levels == ("L2",)
    assert "L2" in decision.reason and "0.50" in decision.reason
    decision = mri_decision(levels, np.array([0.1, 0.49, 0.3]), 0.5)
    assert decision.recommended is False and decision.levels == ()
    assert decision.to_dict()["max_fresh"] == {"level": "L2", "probability": 0.49}
    assert "under the operating point" in decision.reason


def test_no_vertebra_found_is_no_recommendation_but_says_the_film_needs_a_reader() -> None:
    decision = mri_decision((), np.zeros(0), 0.5)
    assert decision.recommended is False and "needs a reader" in decision.reason
    assert decision.line.startswith("MRI not indicated by olvf: ")


@pytest.mark.parametrize(("p", "threshold"), [(0.495, 0.5), (0.4999, 0.5), (0.5001, 0.5), (0.25, 0.2501)])
def test_printed_probabilities_never_contradict_the_verdict(p: float, threshold: float) -> None:
    """0.495 under 0.5 was printed "p(fresh) 0.50 is under the operating point 0.50"."""
    shown_p, shown_t = compared(p, threshold)
    assert (float(shown_p) < float(shown_t)) == (p < threshold) and shown_p != shown_t
    decision = mri_decision(("L1",), np.array([p]), threshold)
    assert f"p(fresh) {shown_p}" in decision.reason and f"operating point {shown_t}" in decision.reason
    assert ("suspected fresh fracture at L1" in decision.reason) == (p >= threshold) == decision.recommended


def test_every_level_at_or_over_the_operating_point_is_named_in_the_line_and_the_headline() -> None:
    """Phantom 5017: L3 (0.49) and L4 both at or over 0.31; a line naming only the highest sent MRI to L4 alone."""
    decision = mri_decision(("L2", "L3", "L4"), np.array([0.1, 0.49, 0.62]), 0.31)
    assert decision.levels == ("L3", "L4")
    assert "suspected fresh fracture at L3 (p(fresh) 0.49), L4 (p(fresh) 0.62)" in decision.line
    assert decision.headline == "Suspected fresh fracture at L3, L4: MRI recommended"
    none = mri_decision(("L2", "L3"), np.array([0.1, 0.2]), 0.31)
    assert none.headline == "No suspected fresh fracture: MRI not indicated by olvf" and "L3" in none.line


@pytest.mark.parametrize(
    ("row", "state"),
    [
        ((0.50, 0.01, 0.49), "suspected fresh"),  # top class normal, yet at or over the operating point
        ((0.20, 0.50, 0.30), "old"),
        ((0.60, 0.30, 0.10), "normal"),
        ((0.31, 0.40, 0.29), "old"),  # top class... old; fresh under the point
        ((0.36, 0.34, 0.30), "normal"),  # fresh under the point: normal and old decide
        ((0.69, 0.00, 0.31), "suspected fresh"),  # exactly at the point: MRI
    ],
)
def test_a_vertebra_is_shown_as_the_mri_rule_decides(row: tuple[float, float, float], state: str) -> None:
    assert vertebra_states(np.array([row]), ("normal", "old", "fresh"), 0.31) == (state,)
    assert state_targets((state,), ("normal", "old", "fresh")).tolist() == [
        {"suspected fresh": 2, "old": 1}.get(state, 0)
    ]


def test_states_that_disagree_with_the_rule_are_refused() -> None:
    with pytest.raises(ValueError, match="disagree"):
        mri_decision(("L1", "L2"), np.array([0.5, 0.1]), 0.31, ("normal", "normal"))
