"""Whether a study is one the bundle was made for: the step before any verdict.

A screening tool that answers every image with confidence is worse than none.
Three checks decide, each from other evidence, and a study gets a verdict
only when none fails:

1. **Header** (:func:`check_header`): what the file says it is. Modality, SOP
   class, Body Part Examined, View Position and Image Type are held to the
   bundle's :class:`~olvf.runtime.bundle.config.IntendedUse`; a value that
   contradicts it (CT, CHEST, PA, DERIVED) refuses the study and names the
   element. A value that is absent is no pass: the next checks look at the
   pixels. A header value is never evidence *for* the domain (anyone can write
   ``Manufacturer: olvf-phantom``).
2. **Anatomy** (:func:`check_anatomy`): what the detector found must look like
   a lateral lumbar column: enough levels in craniocaudal order, bodies of
   consistent size and shape (and of human size where the pixel spacing is
   known), centres along one smooth, upright curve, no body on top of another.
3. **Domain** (:func:`check_domain`): how the crops look to the bundle's own
   networks, against the distribution recorded at export
   (:mod:`olvf.runtime.bundle.domain`). A film beyond the threshold is "outside the
   bundle's domain". For the demo bundle the domain is phantoms, so a
   patient's film gets no verdict from it, which is right.

A study that fails one is **not assessed**: a third outcome, neither a result
nor a failure. Its report carries ``"assessed": false`` and
``"mri_recommended": null`` (never ``false``: "not assessed" must never read
as "no fracture"), the reason in one line, and no per-vertebra verdict.

Research use may override the gate (:class:`Gate` with ``override=True``,
``olvf-infer --outside-intended-use``): the checks still run and are
reported, the verdict is given, and everything written for such a study says
OUTSIDE INTENDED USE. ``olvf-serve`` has no override.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from olvf.runtime.bundle.config import AnatomyRules, IntendedUse
from olvf.runtime.inputs.images import RadiographInfo
from olvf.text import printable
from olvf.vocabulary import COLUMN

#: the order of the levels a lateral lumbar film shows, cranial first
HEADER, ANATOMY, DOMAIN = "header", "anatomy", "domain"
OUTSIDE = "OUTSIDE INTENDED USE"
NOT_ASSESSED = "NOT ASSESSED"

_SOP_NAMES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "DX Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX Image Storage - For Processing",
}


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``passed`` None when it did not run (``detail`` says why)."""

    name: str
    passed: bool | None
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "passed": self.passed, "detail": self.detail, "figures": self.figures}


@dataclass(frozen=True)
class Applicability:
    """Whether a study got a verdict, and on what grounds.

    ``assessed``: a verdict was given. ``reason``: the failed check's one line
    (None when every check passed). ``overridden``: a check failed and the
    research override gave the verdict anyway.
    """

    assessed: bool
    reason: str | None
    checks: tuple[Check, ...]
    intended_use: str
    overridden: bool = False

    @property
    def outside_intended_use(self) -> bool:
        return self.reason is not None

    @property
    def line(self) -> str:
        """What the summary says before (or instead of) the verdict; empty when every check passed."""
        if self.reason is None:
            return ""
        if self.overridden:
            return f"{OUTSIDE} (research override): {self.reason}"
        return f"{NOT_ASSESSED}: {self.reason}"

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "assessed": self.assessed,
            "reason": self.reason,
            "outside_intended_use": self.outside_intended_use,
            "overridden": self.overridden,
            "intended_use": self.intended_use,
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class Gate:
    """How a run applies the checks: the bundle's intended use and whether research use overrides them."""

    intended_use: IntendedUse = field(default_factory=IntendedUse)
    override: bool = False

    def decide(self, checks: Sequence[Check]) -> Applicability:
        failed = next((c for c in checks if c.passed is False), None)
        reason = None if failed is None else failed.detail
        return Applicability(
            assessed=failed is None or self.override,
            reason=reason,
            checks=tuple(checks),
            intended_use=self.intended_use.description,
            overridden=failed is not None and self.override,
        )

    def refuses(self, check: Check) -> bool:
        """Whether ``check`` ends the study's analysis here (it failed, and nothing overrides it)."""
        return check.passed is False and not self.override


def _norm(value: str) -> str:
    return re.sub(r"[\s\-_]+", "", value).upper()


def check_header(info: RadiographInfo, use: IntendedUse) -> Check:
    """The header's own words on what the image is, against the intended use (see the module docstring)."""
    if info.kind != "dicom":
        return Check(HEADER, True, f"a {info.kind.upper()} file has no header to check: the pixels decide")
    said: dict[str, Any] = {
        "modality": info.modality,
        "sop_class_uid": info.sop_class_uid,
        "body_part_examined": info.body_part_examined,
        "view_position": info.view_position,
        "image_type": list(info.image_type) if info.image_type else None,
    }
    problems = []
    if info.modality and _norm(info.modality) not in {_norm(m) for m in use.modalities}:
        problems.append(f"Modality (0008,0060) is {info.modality}; the bundle is for {', '.join(use.modalities)}")
    if info.sop_class_uid and info.sop_class_uid not in use.sop_classes:
        name = _SOP_NAMES.get(info.sop_class_uid) or _sop_name(info.sop_class_uid)
        wanted = ", ".join(_SOP_NAMES.get(u, u) for u in use.sop_classes)
        problems.append(f"SOP Class UID (0008,0016) is {name}; the bundle is for {wanted}")
    if info.body_part_examined and _norm(info.body_part_examined) not in {_norm(b) for b in use.body_parts}:
        problems.append(
            f"Body Part Examined (0018,0015) is {info.body_part_examined}; the bundle is for "
            f"{', '.join(use.body_parts)}"
        )
    if info.view_position and _norm(info.view_position) not in {_norm(v) for v in use.views}:
        problems.append(
            f"View Position (0018,5101) is {info.view_position}; the bundle is for lateral views "
            f"({', '.join(use.views)})"
        )
    if info.image_type:
        allowed = [{_norm(v) for v in values} for values in use.image_type_values]
        for position, (value, ok) in enumerate(zip(info.image_type[:2], allowed)):
            if value and ok and _norm(value) not in ok:
                problems.append(
                    f"Image Type (0008,0008) is {chr(92).join(info.image_type)}; value {position + 1} must be "
                    f"{' or '.join(use.image_type_values[position])} (an image as the modality made it)"
                )
                break
    if problems:
        return Check(HEADER, False, printable("; ".join(problems)), said)
    absent = [k for k in ("body_part_examined", "view_position") if not said[k]]
    detail = "header agrees with the intended use" + (
        f" ({', '.join(a.replace('_', ' ') for a in absent)} not given: the pixels decide)" if absent else ""
    )
    return Check(HEADER, True, detail, said)


def _sop_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        name = UID(uid).name
    except Exception:  # noqa: BLE001 - an odd UID is shown as it is
        name = uid
    return name or uid


def check_anatomy(
    boxes: np.ndarray,
    levels: Sequence[str],
    *,
    rules: AnatomyRules,
    spacing_mm: tuple[float, float] | None,
    named_levels: bool,
) -> Check:
    """Whether the detected bodies (``boxes`` (N, 4) xyxy, top to bottom) look like a lateral lumbar column.

    ``named_levels``: the detector names each level (one class per level), so their order can be checked;
    otherwise levels are numbered by position and only the geometry speaks.
    """
    n = len(boxes)
    figures: dict[str, Any] = {"bodies": n}
    if n < rules.min_levels:
        found = "no vertebral body" if n == 0 else f"only {n} vertebral bod{'y' if n == 1 else 'ies'}"
        return Check(
            ANATOMY,
            False,
            f"{found} found (a lateral lumbar film shows at least {rules.min_levels} in a column): not a lateral "
            "lumbar radiograph, or too little of the spine on it",
            figures,
        )
    b = np.asarray(boxes, np.float64)
    widths, heights = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    aspect = widths / np.maximum(heights, 1e-9)
    figures.update(
        aspect=[round(float(a), 3) for a in aspect],
        width_ratio=round(float(widths.max() / max(widths.min(), 1e-9)), 3),
        height_ratio=round(float(heights.max() / max(heights.min(), 1e-9)), 3),
    )
    problems: list[str] = []
    steps = np.ones(n - 1)
    if named_levels:
        index = [COLUMN.index(level) if level in COLUMN else None for level in levels]
        if any(i is None for i in index):
            problems.append(f"levels {', '.join(levels)} are not all of the lumbar column")
        else:
            gaps = np.diff(np.array(index, np.float64))
            steps = np.maximum(gaps, 1.0)
            if (gaps <= 0).any():
                problems.append(
                    f"levels run {' '.join(levels)} from the top of the image, not craniocaudally: the film is "
                    "upside down, rotated or not a lateral lumbar view"
                )
            elif (gaps - 1 > rules.max_missing_levels).any():
                problems.append(f"levels {' '.join(levels)} skip more than {rules.max_missing_levels} level(s)")
    low, high = rules.aspect
    odd = [i for i, a in enumerate(aspect) if not low <= a <= high]
    if odd:
        shown = ", ".join(f"{levels[i]} {aspect[i]:.2f}" for i in odd[:3])
        problems.append(f"body width/height {shown} outside {low:g}-{high:g} (a lateral lumbar body's shape)")
    if figures["width_ratio"] > rules.max_width_ratio:
        problems.append(
            f"body widths differ by {figures['width_ratio']:.2f}x (a column's differ by at most "
            f"{rules.max_width_ratio:g}x)"
        )
    if figures["height_ratio"] > rules.max_height_ratio:
        problems.append(
            f"body heights differ by {figures['height_ratio']:.2f}x (a column's differ by at most "
            f"{rules.max_height_ratio:g}x)"
        )
    if spacing_mm is not None:
        row_mm, col_mm = spacing_mm
        h_mm, w_mm = float(np.median(heights)) * row_mm, float(np.median(widths)) * col_mm
        figures.update(median_height_mm=round(h_mm, 1), median_width_mm=round(w_mm, 1))
        if not rules.height_mm[0] <= h_mm <= rules.height_mm[1] or not rules.width_mm[0] <= w_mm <= rules.width_mm[1]:
            (w0, w1), (h0, h1) = rules.width_mm, rules.height_mm
            problems.append(
                f"bodies of {w_mm:.0f} x {h_mm:.0f} mm (width x height) at the file's pixel spacing; a lumbar "
                f"body is {w0:g}-{w1:g} x {h0:g}-{h1:g} mm"
            )
    median_h, median_w = float(np.median(heights)), float(np.median(widths))
    distance = np.hypot(np.diff(cx), np.diff(cy)) / steps / max(median_h, 1e-9)
    figures["steps"] = [round(float(d), 3) for d in distance]
    if len(distance) and (distance.min() < rules.step[0] or distance.max() > rules.step[1]):
        problems.append(
            f"centres {distance.min():.2f}-{distance.max():.2f} body heights apart per level (a column's are "
            f"{rules.step[0]:g}-{rules.step[1]:g})"
        )
    tilt = math.degrees(math.atan2(abs(cx[-1] - cx[0]), abs(cy[-1] - cy[0]) + 1e-9))
    figures["tilt_degrees"] = round(tilt, 1)
    if tilt > rules.max_tilt_degrees:
        problems.append(f"the column lies {tilt:.0f} degrees from upright (at most {rules.max_tilt_degrees:g})")
    if n >= 4:
        fit = np.polyval(np.polyfit(cy, cx, 2), cy)
        offset = float(np.abs(cx - fit).max()) / max(median_w, 1e-9)
        figures["curve_offset"] = round(offset, 3)
        if offset > rules.max_curve_offset:
            problems.append(
                f"a centre lies {offset:.2f} body widths off the curve through the others (at most "
                f"{rules.max_curve_offset:g})"
            )
    overlap = _max_iou(b)
    figures["max_overlap"] = round(overlap, 3)
    if overlap > rules.max_overlap:
        problems.append(f"two bodies overlap (IoU {overlap:.2f}, at most {rules.max_overlap:g})")
    if problems:
        return Check(ANATOMY, False, "not a lateral lumbar column: " + "; ".join(problems), figures)
    return Check(ANATOMY, True, f"{n} bodies in a lateral lumbar column", figures)


def _max_iou(b: np.ndarray) -> float:
    best = 0.0
    for i in range(len(b)):
        for j in range(i + 1, len(b)):
            w = min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0])
            h = min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1])
            if w <= 0 or h <= 0:
                continue
            inter = w * h
            union = (b[i, 2] - b[i, 0]) * (b[i, 3] - b[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            best = max(best, inter / union)
    return best


def check_domain(distances: np.ndarray, study_distance: float | None, threshold: float, fitted_on: str) -> Check:
    """The study's distance from the bundle's domain (median of its vertebrae's) against the recorded threshold."""
    figures = {
        "study_distance": None if study_distance is None else round(float(study_distance), 4),
        "threshold": round(float(threshold), 4),
        "vertebra_distances": [round(float(d), 4) for d in distances],
    }
    if study_distance is None:
        return Check(DOMAIN, None, "no vertebra to measure", figures)
    if study_distance > threshold:
        return Check(
            DOMAIN,
            False,
            f"outside the bundle's domain: the crops lie {study_distance:.2f} from what it was checked on "
            f"({fitted_on}; threshold {threshold:.2f})",
            figures,
        )
    return Check(DOMAIN, True, f"within the bundle's domain ({study_distance:.2f}, threshold {threshold:.2f})", figures)


def no_domain_record() -> Check:
    return Check(
        DOMAIN,
        None,
        "not checked: the bundle records no domain (olvf-export --fit-domain DIR --domain RADIOGRAPHS adds one)",
    )
