"""olvf-export's backend verification, exercised on the backends this machine has."""

from __future__ import annotations

import pytest

import olvf
from olvf.errors import ParityError
from olvf.runtime.checks.verify import Tolerances, compare_runtimes


def test_fp16_graph_reproduces_the_fp32_bundle(cascade_bundle) -> None:
    with olvf.load(cascade_bundle, precision="fp16") as candidate, olvf.load(cascade_bundle) as reference:
        figures = compare_runtimes(candidate, reference)
    assert figures["ensemble"]["crops"] == 9  # six phantom vertebrae and three noise crops
    assert 0 < figures["ensemble"]["probabilities_max_abs_diff"] <= 1e-2
    assert figures["detector"]["min_matched_iou"] > 0.99


def test_a_backend_over_tolerance_is_refused(cascade_bundle) -> None:
    with olvf.load(cascade_bundle, precision="fp16") as candidate, olvf.load(cascade_bundle) as reference:
        with pytest.raises(ParityError, match="does not reproduce the bundle: probabilities differ"):
            compare_runtimes(candidate, reference, Tolerances(probabilities=1e-9, cam=1.0))
