"""One study's report: what the cascade found, as data for scripts (report.json) and as lines for people.

Built from a :class:`olvf.runtime.study.results.StudyResult` and the run's
:class:`ReportContext`; nothing is recomputed here. How Grad-CAM regions are
defined is in :mod:`olvf.runtime.steps.regions`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from olvf.runtime.steps.decision import compared
from olvf.runtime.steps.regions import REGIONS
from olvf.runtime.study.results import StudyResult
from olvf.vocabulary import DEMO_MARK, DEMO_WARNING

if TYPE_CHECKING:
    from olvf.runtime.study.runtime import Runtime

SCHEMA = "olvf-report/1"
CROP_MODE_NOTE = "the bundle has no detector: each image was classified as one vertebral-body crop"


@dataclass(frozen=True)
class ReportContext:
    """What every report of one run shares: the bundle and the backend that ran it."""

    bundle: dict[str, Any]
    backend: dict[str, Any]
    classes: tuple[str, ...]
    demo: bool
    #: the images the bundle is for, in words (its manifest's intended use)
    intended_use: str = ""


def report_context(rt: Runtime, bundle_label: str) -> ReportContext:
    """The run's context from a loaded runtime; ``bundle_label``: the bundle as the user named it."""
    manifest = rt.manifest
    assert rt.runner is not None  # a study pipeline needs classifiers
    detector = None
    if rt.detector is not None:
        detector = {
            "name": rt.detector_backend,
            "device": rt.detector.device,
            # A TensorRT engine's own precision (a TensorRT 10 engine is FP16 built from the FP32 graph).
            "precision": rt.detector.precision or manifest.graph_for("detector", rt.precision).precision,
        }
    return ReportContext(
        bundle={
            "path": bundle_label,
            "manifest_sha256": rt.bundle.manifest_sha256,
            "demo": manifest.demo,
            "signature": rt.bundle.signature.to_dict(),
        },
        backend={
            "name": rt.backend,
            "device": rt.runner.device,
            "precision": rt.precision,
            "detector": detector,
            "requested": rt.selection.requested,
            "why": rt.selection.why,
            # A reduced-precision route runs only verified: what it was checked on, on which CPU, its figures.
            **({"verification": rt.selection.verified} if rt.selection.verified else {}),
        },
        classes=rt.classes,
        demo=manifest.demo,
        intended_use=manifest.intended_use.description,
    )


def verdict_line(study: StudyResult, demo: bool) -> str:
    """The study's verdict in one line, as the summary, the overlay and the DICOM objects all say it: marked DEMO
    for a demo bundle and OUTSIDE INTENDED USE where the research override gave it, on the line itself."""
    line = study.decision.line
    applicability = study.applicability
    if applicability.overridden:
        line = f"{applicability.line} | {line}"
    if demo and study.decision.assessed:
        line = f"{DEMO_MARK} | {line}"
    return line


def verdict_note(study: StudyResult, demo: bool) -> str | None:
    """What an integration must read beside ``mri_recommended``: why there is none, or why it is no diagnosis."""
    notes = []
    if not study.assessed:
        notes.append(f"not assessed: {study.applicability.reason}; null is no verdict, not a negative one")
    elif study.applicability.overridden:
        notes.append(f"OUTSIDE INTENDED USE (research override): {study.applicability.reason}")
    if demo and study.assessed:
        notes.append(DEMO_WARNING)
    return "; ".join(notes) or None


def _probabilities(classes: Sequence[str], row: np.ndarray) -> dict[str, float]:
    return {name: round(float(value), 6) for name, value in zip(classes, row)}


def _coords(values: np.ndarray, digits: int = 1) -> list[float]:
    return [round(float(v), digits) for v in values]


def _finite_or_none(value: float) -> float | None:
    return round(float(value), 6) if np.isfinite(value) else None


def heatmap_name(level: str) -> str:
    return f"{level}_gradcam.png"


def heatmap_caption(study: StudyResult, index: int) -> str:
    target = study.classification.classes[int(study.classification.target[index])]
    region = study.cam_regions.peak_regions[index].replace("_", " ")
    return f"Grad-CAM of class '{target}' (what it is shown as), peak in the {region}"


@dataclass(frozen=True)
class VertebraRecord:
    """One vertebra as every output states it: rounded once, here, so report.json and the DICOM findings (and
    anything else built from a record) cannot say different numbers. ``to_json`` is its report.json form."""

    level: str
    box: tuple[float, float, float, float]  # original pixels, x1, y1, x2, y2, 0.1 px
    detector_score: float | None
    probabilities: Mapping[str, float]  # class -> p, 6 decimals
    models: Mapping[str, Mapping[str, float]]
    prediction: str  # the argmax class
    shown_as: str  # the MRI rule's state: what the overlay, the DICOM objects and the summary show
    gradcam_target: str
    crop_region: tuple[int, int, int, int]
    gradcam_peak: tuple[float, float]
    gradcam_peak_region: str
    gradcam_regions: Mapping[str, float] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "box": list(self.box),
            "detector_score": self.detector_score,
            "probabilities": dict(self.probabilities),
            "models": {name: dict(p) for name, p in self.models.items()},
            "prediction": self.prediction,
            "shown_as": self.shown_as,
            "gradcam": {
                "image": heatmap_name(self.level),
                "target": self.gradcam_target,
                "crop_region": list(self.crop_region),
                "peak": list(self.gradcam_peak),
                "peak_region": self.gradcam_peak_region,
                "regions": None if self.gradcam_regions is None else dict(self.gradcam_regions),
            },
        }


def vertebra_records(study: StudyResult, classes: Sequence[str]) -> tuple[VertebraRecord, ...]:
    """Each vertebra of a classified study, rounded as report.json holds it (see :class:`VertebraRecord`)."""
    detections, result, cams = study.detections, study.classification, study.cam_regions
    records = []
    for i, level in enumerate(detections.levels):
        fractions = cams.fractions[i]
        box = _coords(detections.boxes[i])
        peak = _coords(cams.peaks[i])
        records.append(
            VertebraRecord(
                level=level,
                box=(box[0], box[1], box[2], box[3]),
                detector_score=_finite_or_none(detections.scores[i]) if study.cascade else None,
                probabilities=_probabilities(classes, result.probabilities[i]),
                models={name: _probabilities(classes, probs[i]) for name, probs in result.model_probabilities.items()},
                prediction=classes[int(result.predictions[i])],
                shown_as=study.decision.states[i],
                gradcam_target=classes[int(result.target[i])],
                crop_region=(
                    int(study.regions[i][0]),
                    int(study.regions[i][1]),
                    int(study.regions[i][2]),
                    int(study.regions[i][3]),
                ),
                gradcam_peak=(peak[0], peak[1]),
                gradcam_peak_region=cams.peak_regions[i],
                gradcam_regions=None
                if np.isnan(fractions).any()
                else {name: round(float(f), 4) for name, f in zip(REGIONS, fractions)},
            )
        )
    return tuple(records)


def vertebra_reports(study: StudyResult, classes: Sequence[str]) -> list[dict[str, Any]]:
    """report.json's ``vertebrae``: the records' JSON form."""
    return [record.to_json() for record in vertebra_records(study, classes)]


def build_report(
    study: StudyResult,
    context: ReportContext,
    *,
    overlay: Mapping[str, Any],
    write_ms: float,
) -> dict[str, Any]:
    """report.json of one study, plain JSON types only.

    ``overlay``: where the overlay picture is and how original pixels map onto
    it; ``write_ms``: the time taken to draw and write (timings ``report``).
    """
    info = study.radiograph.info.to_dict()
    info["size"] = [study.radiograph.info.columns, study.radiograph.info.rows]  # [width, height]: every box's frame
    decision = study.decision.to_dict()
    times = study.timings
    timings = {
        "read": times.read,
        "detect": times.detect,
        "classify": times.classify,
        "applicability": times.applicability,  # the intended-use checks (header, anatomy, domain distance)
        "report": write_ms,
    }
    timings["total"] = sum(v for v in timings.values() if v is not None)
    report: dict[str, Any] = {"schema": SCHEMA}
    if context.demo:
        report["warning"] = DEMO_WARNING  # first, where nobody can miss it
    report.update(
        {
            # Which input this folder holds: its real path and content (olvf.runtime.writers.study_folder).
            "source": {
                "path": None if info["kind"] == "array" else os.path.realpath(study.source),
                "sha256": info.get("sha256"),
            },
            "mode": "cascade" if study.cascade else "crop",
            # false only after an assessment; null when the study was not assessed (never read it as "no fracture")
            "assessed": study.assessed,
            "mri_recommended": decision["mri_recommended"],
            "mri_note": verdict_note(study, context.demo),
            "mri_reason": decision["reason"],
            "mri_levels": decision["levels"],
            "max_fresh": decision["max_fresh"],
            "operating_point": {"fresh": study.decision.operating_point},
            "input": info,
            "bundle": dict(context.bundle),
            "backend": dict(context.backend),
            "detection": {
                "count": len(study.detections),
                "level_rule": study.detections.level_rule,
                "notes": list(study.detections.notes) if study.cascade else [CROP_MODE_NOTE],
            },
            "applicability": study.applicability.to_dict(),
            "gradcam_regions": study.geometry.to_dict(),
            "vertebrae": vertebra_reports(study, context.classes),
            "overlay": dict(overlay),
            "timings_ms": {key: None if value is None else round(float(value), 2) for key, value in timings.items()},
            # The detector and ensemble calls served this many studies; each reports its share of them.
            "timings_shared_by": times.shared_by,
        }
    )
    return report


# --- for people -----------------------------------------------------------------


def summary_lines(study: StudyResult, name: str, folder: str, *, demo: bool = False) -> list[str]:
    """A short table of one study for the terminal; only the file name, never patient data."""
    lines = [f"{name}  ->  {folder}/overlay.png"]
    if not study.assessed:
        lines.append(f"  {verdict_line(study, demo)}")
        return lines
    if not study.cascade:
        lines.append(f"  ({CROP_MODE_NOTE})")
    classes = study.classification.classes
    fresh = classes.index("fresh")
    if len(study):
        threshold = study.decision.operating_point
        lines.append(f"  {'level':6s} {'shown as':16s} {'p(fresh)':>8s}  top class  Grad-CAM peak")
        for i, level in enumerate(study.detections.levels):
            probabilities = study.classification.probabilities[i]
            predicted = int(study.classification.predictions[i])
            lines.append(
                f"  {level:6s} {study.decision.states[i]:16s} {compared(float(probabilities[fresh]), threshold)[0]:>8s}"
                f"  {classes[predicted]:9s}  {study.cam_regions.peak_regions[i].replace('_', ' ')}"
            )
    else:
        lines.append(f"  no vertebral body found ({study.detections.level_rule})")
    lines.append(f"  {verdict_line(study, demo)}")
    return lines
