"""What the DICOM writers need to know about one study, independent of how the pipeline computed it.

The pipeline's result objects are adapted to these frozen dataclasses at the
call site (:mod:`.dicom_study`), so the writers depend on nothing upstream
but this module and the decision's own words
(:mod:`olvf.runtime.steps.decision`): each vertebra carries the state the MRI
rule gave it, and the study's levels and headline are the decision's, so the
Secondary Capture, the SR, the overlay and the report cannot say different
things. Every value is checked here, once: a writer that received a
probability of 1.3 or an unknown state would put a wrong statement into the
patient's record. Invalid values raise ``ValueError``: they are bugs of the
caller, not user errors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from olvf.runtime.steps.decision import STATES, SUSPECTED_FRESH, MriDecision
from olvf.vocabulary import CLASSES
from olvf.vocabulary import LEVELS as NAMED_LEVELS

CROP_LEVEL = "crop"  # a bundle without detector: the whole image was classified as one crop
_UNNAMED_LEVEL = re.compile(r"V[1-9][0-9]?")  # "V1".."V99": levels the detector could not name
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}")
    return value


def _unit(value: float, what: str) -> float:
    value = _finite(value, what)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {value}")
    return value


@dataclass(frozen=True)
class VertebraFinding:
    """One vertebral body: where it is, what it is shown as, and the ensemble's probabilities.

    ``box`` is (x1, y1, x2, y2) in source-image pixels: x1, y1 the first column
    and row inside the body, x2, y2 one past the last (as ``report.json``).
    ``state`` is the decision's word for it (``decision.STATES``: suspected
    fresh at or over the operating point, otherwise old or normal);
    ``probabilities`` are the ensemble's, per class, as ``report.json`` holds
    them.
    """

    level: str
    box: tuple[float, float, float, float]
    state: str
    probabilities: Mapping[str, float]
    detector_score: float | None = None

    def __post_init__(self) -> None:
        if not (self.level in NAMED_LEVELS or self.level == CROP_LEVEL or _UNNAMED_LEVEL.fullmatch(self.level)):
            named = ", ".join(NAMED_LEVELS)
            raise ValueError(f"level must be one of {named}, V1..V99 or {CROP_LEVEL!r}, got {self.level!r}")
        box = tuple(_finite(v, "box coordinate") for v in self.box)
        if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]) or min(box) < 0:
            raise ValueError(f"box must be x1 < x2, y1 < y2, all >= 0; got {self.box}")
        object.__setattr__(self, "box", box)
        if self.state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {self.state!r}")
        if set(self.probabilities) != set(CLASSES):
            got = sorted(self.probabilities)
            raise ValueError(f"probabilities must have exactly the keys {', '.join(CLASSES)}, got {got}")
        probabilities = {name: _unit(self.probabilities[name], f"p({name})") for name in CLASSES}
        object.__setattr__(self, "probabilities", MappingProxyType(probabilities))
        if self.detector_score is not None:
            object.__setattr__(self, "detector_score", _unit(self.detector_score, "detector_score"))


@dataclass(frozen=True)
class Algorithm:
    """What produced the findings: the SR's algorithm identification and both objects' Contributing Equipment.

    ``bundle_sha256`` is the sha256 of the bundle's ``manifest.json`` (which
    pins every model file by its own hash); ``backend`` says what ran it, for
    example ``"onnxruntime CPUExecutionProvider fp32"``.
    """

    name: str
    version: str
    bundle_sha256: str
    backend: str

    def __post_init__(self) -> None:
        if not self.name or not self.version or not self.backend:
            raise ValueError("algorithm name, version and backend must not be empty")
        if not _SHA256.fullmatch(self.bundle_sha256):
            raise ValueError(f"bundle_sha256 must be 64 lower-case hex digits, got {self.bundle_sha256!r}")


@dataclass(frozen=True)
class StudyFindings:
    """Everything olvf concluded about one radiograph.

    ``operating_point`` is the fresh-fracture threshold that decided
    ``mri_recommended``; ``mri_reason`` is the decision's reason
    (``MriDecision.reason``: levels and probabilities only, never patient
    data). ``demo``: the bundle has random classifier weights, and every
    object written says so. ``mri_recommended`` None: the study was not
    assessed (``mri_reason`` says why) and there are no vertebrae.
    ``outside_intended_use``: the research override gave findings for a study
    that failed a check (its reason).

    MRI is recommended exactly when a vertebra is a suspected fresh fracture;
    :attr:`mri_levels` and :attr:`decision` give the levels and the verdict's
    words as the decision has them.
    """

    vertebrae: tuple[VertebraFinding, ...]
    mri_recommended: bool | None
    mri_reason: str
    operating_point: float
    demo: bool
    algorithm: Algorithm
    outside_intended_use: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "vertebrae", tuple(self.vertebrae))
        for v in self.vertebrae:
            if not isinstance(v, VertebraFinding):
                raise ValueError(f"vertebrae must be VertebraFinding, got {type(v).__name__}")
        levels = [v.level for v in self.vertebrae]
        if len(set(levels)) != len(levels):
            raise ValueError(f"each level may appear once, got {levels}")
        object.__setattr__(self, "operating_point", _unit(self.operating_point, "operating_point"))
        if not self.mri_reason.strip():
            raise ValueError("mri_reason must say why")
        if self.mri_recommended is None and self.vertebrae:
            raise ValueError("a study that was not assessed has no vertebra findings")
        if self.mri_recommended is not None and self.mri_recommended != bool(self.mri_levels):
            raise ValueError(
                f"mri_recommended is {self.mri_recommended} but the suspected fresh levels are {list(self.mri_levels)}"
                ": the MRI call and the vertebrae's states come from one rule"
            )

    @property
    def mri_levels(self) -> tuple[str, ...]:
        """The suspected fresh fracture levels, in detection order: report.json's ``mri_levels``."""
        return tuple(v.level for v in self.vertebrae if v.state == SUSPECTED_FRESH)

    @property
    def decision(self) -> MriDecision:
        """The verdict as the decision module words it (``headline``, ``line``), from these findings."""
        if self.mri_recommended is None:
            return MriDecision(None, self.mri_reason, (), None, None, self.operating_point)
        fresh = [v.probabilities["fresh"] for v in self.vertebrae]
        best = max(range(len(fresh)), key=fresh.__getitem__) if fresh else None
        return MriDecision(
            recommended=self.mri_recommended,
            reason=self.mri_reason,
            levels=self.mri_levels,
            max_fresh_level=None if best is None else self.vertebrae[best].level,
            max_fresh=None if best is None else fresh[best],
            operating_point=self.operating_point,
            states=tuple(v.state for v in self.vertebrae),
        )
