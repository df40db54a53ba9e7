"""The study's verdict: when MRI is recommended, and a reason whose numbers never contradict it."""

from __future__ import annotations

import numpy as np
import pytest

from olvf.runtime.steps.decision import compared, mri_decision


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
    reason = mri_decision(("L1",), np.array([p]), threshold).reason
    assert f"{shown_p} at L1" in reason and reason.endswith(shown_t)
