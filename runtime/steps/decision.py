"""The study's verdict, and what each vertebra is shown as: both from one rule.

A vertebra is a **suspected fresh fracture** when its p(fresh) reaches the bundle's operating point (ties go to
MRI: in the emergency department a missed fresh fracture costs more than a scan); otherwise it is shown as **old**
or **normal**, whichever of the two the ensemble finds more probable. MRI is recommended when any vertebra is a
suspected fresh fracture, and names exactly those levels. The overlay's boxes, the heat maps, the report, the
DICOM objects and the console summary all take a vertebra's state and the verdict from here, so a picture can
never call normal what the verdict sends to MRI.

A film where no vertebral body was found gets no verdict of "no MRI" by omission: it says that the film needs
a reader. A film the bundle was not made for (:mod:`olvf.runtime.steps.applicability`) gets no verdict at all:
``recommended`` is None, never False, so that "not assessed" can never read as "no fracture".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: What a vertebra is shown as; each state has one colour and one word everywhere olvf shows it.
SUSPECTED_FRESH = "suspected fresh"
OLD = "old"
NORMAL = "normal"
STATES: tuple[str, ...] = (SUSPECTED_FRESH, OLD, NORMAL)
#: The class whose evidence a state shows (its Grad-CAM map, its probability).
STATE_CLASS = {SUSPECTED_FRESH: "fresh", OLD: "old", NORMAL: "normal"}


def is_suspected_fresh(p_fresh: float, threshold: float) -> bool:
    """The MRI rule for one vertebra: at or over the operating point."""
    return bool(p_fresh >= threshold)


def vertebra_states(probabilities: np.ndarray, classes: Sequence[str], threshold: float) -> tuple[str, ...]:
    """Each vertebra's state from its ensemble probabilities (N, C) in ``classes`` order (see the module)."""
    rows = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(classes))
    fresh, old, normal = (list(classes).index(name) for name in ("fresh", "old", "normal"))
    return tuple(
        SUSPECTED_FRESH if is_suspected_fresh(row[fresh], threshold) else OLD if row[old] > row[normal] else NORMAL
        for row in rows
    )


def state_targets(states: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """The class index whose Grad-CAM each vertebra shows: the evidence for what it is shown as."""
    return np.asarray([list(classes).index(STATE_CLASS[s]) for s in states], dtype=np.int64)


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
    #: what each detected vertebra is shown as (:data:`STATES`), in detection order; empty when not assessed
    states: tuple[str, ...] = ()

    @property
    def assessed(self) -> bool:
        return self.recommended is not None

    @property
    def line(self) -> str:
        """The verdict in one line, as the summary, the overlay, the DICOM objects and the report say it."""
        if self.recommended is None:
            return f"NOT ASSESSED, no verdict: {self.reason}; the film needs a reader"
        verdict = "MRI recommended" if self.recommended else "MRI not indicated by olvf"
        return f"{verdict}: {self.reason}"

    @property
    def headline(self) -> str:
        """The verdict in clinical words, for a picture's header: every MRI level named, no numbers."""
        if self.recommended is None:
            return "NOT ASSESSED, no verdict: the film needs a reader"
        if self.recommended:
            return f"{SUSPECTED_FRESH.capitalize()} fracture at {', '.join(self.levels)}: MRI recommended"
        if self.max_fresh_level is None:
            return "No vertebral body found: the film needs a reader"
        return "No suspected fresh fracture: MRI not indicated by olvf"

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


def mri_decision(levels: Sequence[str], fresh: np.ndarray, threshold: float, states: Sequence[str] = ()) -> MriDecision:
    """Recommend MRI when any vertebra's fresh probability reaches ``threshold``; name every such level.

    ``states``: each vertebra's :func:`vertebra_states`, kept with the decision for everything that shows it.
    """
    if states and [lvl for lvl, st in zip(levels, states) if st == SUSPECTED_FRESH] != [
        lvl for lvl, value in zip(levels, fresh) if is_suspected_fresh(value, threshold)
    ]:
        raise ValueError("vertebra states disagree with the MRI rule")  # a bug: they come from the same rule
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
    over = [(lvl, float(value)) for lvl, value in zip(levels, fresh) if is_suspected_fresh(value, threshold)]
    shown_t = compared(p, threshold)[1]
    if over:
        found = ", ".join(f"{lvl} (p(fresh) {compared(value, threshold)[0]})" for lvl, value in over)
        reason = f"suspected fresh fracture at {found}, at or over the operating point {shown_t}"
    else:
        shown_p, shown_t = compared(p, threshold)
        reason = (
            f"no suspected fresh fracture (highest p(fresh) {shown_p} at {level} is under the operating point "
            f"{shown_t})"
        )
    return MriDecision(bool(over), reason, tuple(lvl for lvl, _ in over), level, p, threshold, tuple(states))
