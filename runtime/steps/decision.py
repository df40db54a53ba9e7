"""The study's verdict: MRI recommended when any vertebra's p(fresh) reaches the bundle's operating point.

Ties go to MRI: in the emergency department a missed fresh fracture costs more
than a scan. A film where no vertebral body was found gets no verdict of
"no MRI" by omission: it says that the film needs a reader. A film the bundle
was not made for (:mod:`olvf.runtime.steps.applicability`) gets no verdict at all:
``recommended`` is None, never False, so that "not assessed" can never read
as "no fracture".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MriDecision:
    """Whether olvf recommends MRI for one study, and why, in words a clinician reads.

    ``recommended`` is None for a study that was not assessed (``reason`` says why).
    """

    recommended: bool | None
    reason: str
    levels: tuple[str, ...]  # the vertebrae at or over the operating point
    max_fresh_level: str | None
    max_fresh: float | None
    operating_point: float

    @property
    def assessed(self) -> bool:
        return self.recommended is not None

    @property
    def line(self) -> str:
        if self.recommended is None:
            return f"NOT ASSESSED, no verdict: {self.reason}; the film needs a reader"
        verdict = "MRI recommended" if self.recommended else "MRI not indicated by olvf"
        return f"{verdict}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "mri_recommended": self.recommended,
            "reason": self.reason,
            "levels": list(self.levels),
            "max_fresh": None
            if self.max_fresh_level is None or self.max_fresh is None
            else {"level": self.max_fresh_level, "probability": round(self.max_fresh, 6)},
        }


def compared(value: float, threshold: float) -> tuple[str, str]:
    """Both numbers with as many decimals as it takes for their printed order to match the real one.

    ``0.495`` against ``0.5`` prints as ``0.495`` and ``0.500``, never as ``0.50`` and ``0.50``.
    """
    for digits in range(2, 7):
        a, b = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if (a == b) == (value == threshold) and (float(a) < float(b)) == (value < threshold):
            return a, b
    return f"{value:.6g}", f"{threshold:.6g}"


def not_assessed(reason: str, threshold: float) -> MriDecision:
    """No verdict: the study is not one the bundle was made for (``reason``: the check that said so)."""
    return MriDecision(
        recommended=None, reason=reason, levels=(), max_fresh_level=None, max_fresh=None, operating_point=threshold
    )


def mri_decision(levels: Sequence[str], fresh: np.ndarray, threshold: float) -> MriDecision:
    """Recommend MRI when any vertebra's fresh probability reaches ``threshold``."""
    if len(levels) == 0:
        return MriDecision(
            recommended=False,
            reason="no vertebral body was found, so nothing was classified; the film needs a reader",
            levels=(),
            max_fresh_level=None,
            max_fresh=None,
            operating_point=threshold,
        )
    best = int(np.argmax(fresh))
    p, level = float(fresh[best]), levels[best]
    over = tuple(lvl for lvl, value in zip(levels, fresh) if value >= threshold)
    shown_p, shown_t = compared(p, threshold)
    if over:
        reason = f"p(fresh) {shown_p} at {level} is at or over the operating point {shown_t}"
    else:
        reason = f"highest p(fresh) {shown_p} at {level} is under the operating point {shown_t}"
    return MriDecision(bool(over), reason, over, level, p, threshold)
