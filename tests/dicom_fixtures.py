"""Source DICOMs, overlays and findings for the DICOM writer tests, made with what the product uses.

The source is an ``olvf.phantom`` radiograph written as DX with a patient
identity and accession number added; the overlay is drawn by
``olvf.runtime.writers.overlay.render_overlay`` from the pixels as
``olvf.runtime.inputs.reader`` reads them (MONOCHROME1 inverted there); the
findings put a box on every phantom level, "fresh" where the phantom has a
fresh fracture. The classifier's numbers are made up: these tests check how
findings are written, not how they are computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from olvf.phantom import dicom_dataset, make_phantom
from olvf.runtime.inputs.reader import read_radiograph
from olvf.runtime.writers import Algorithm, StudyFindings, VertebraFinding
from olvf.runtime.writers.overlay import STATE_COLOURS, Mark, render_overlay
from olvf.runtime.writers.report import DEMO_WARNING

PATIENT_NAME = "Kojima^Hanako"
PATIENT_ID = "MRN-20240917-3"
ACCESSION = "ACC-55817"
BUNDLE_SHA = "3f" * 32
OTHER_BUNDLE_SHA = "a5" * 32
PROBABILITIES = {
    "normal": {"normal": 0.861234, "old": 0.091, "fresh": 0.047766},
    "old": {"normal": 0.2, "old": 0.654321, "fresh": 0.145679},
    "fresh": {"normal": 0.05, "old": 0.138765, "fresh": 0.811235},
}
PEAKS = ("centre", "upper_endplate", "lower_endplate", "anterior", "posterior", "outside_box")


def write_source(
    path: Path,
    *,
    size: tuple[int, int] = (1200, 960),
    seed: int = 3,
    monochrome1: bool = False,
    patient_name: str = PATIENT_NAME,
    character_set: str | list[str] = "ISO_IR 100",
    fractures: dict[str, str] | None = None,
) -> tuple[Path, object]:
    """A phantom DX with a patient, an accession and a study date, as PACS would hold it."""
    phantom = make_phantom(seed=seed, fractures=fractures if fractures is not None else {"L2": "fresh"}, size=size)
    ds = dicom_dataset(phantom, monochrome1=monochrome1)
    ds.SpecificCharacterSet = character_set
    ds.PatientName = patient_name
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19410203"
    ds.PatientSex = "F"
    ds.AccessionNumber = ACCESSION
    ds.StudyDate, ds.StudyTime = "20240917", "031502"
    ds.save_as(path, enforce_file_format=True)
    return path, phantom


def findings_for(phantom: object, *, demo: bool = True, sha: str = BUNDLE_SHA, levels: bool = True) -> StudyFindings:
    vertebrae = []
    for i, truth in enumerate(phantom.levels):  # type: ignore[attr-defined]
        label = truth.label
        level = truth.level if levels else f"V{i + 1}"
        box = tuple(float(v) + 0.25 * (k % 2) for k, v in enumerate(truth.box))  # sub-pixel, as detectors give
        vertebrae.append(VertebraFinding(level, box, label, PROBABILITIES[label], PEAKS[i % len(PEAKS)], 0.9 - i / 100))
    fresh = [v for v in vertebrae if v.probabilities["fresh"] >= 0.5]
    reason = (
        f"p(fresh) 0.81 at {fresh[0].level} is at or over the operating point 0.50"
        if fresh
        else "highest p(fresh) 0.15 is under the operating point 0.50"
    )
    return StudyFindings(
        vertebrae=tuple(vertebrae),
        mri_recommended=bool(fresh),
        mri_reason=reason,
        operating_point=0.5,
        demo=demo,
        algorithm=Algorithm("olvf", "0.1.0", sha, "onnxruntime CPUExecutionProvider fp32"),
    )


def overlay_rgb(source: Path, findings: StudyFindings) -> np.ndarray:
    """The overlay as olvf draws it (render_overlay gives BGR), converted to RGB for the writers."""
    radiograph = read_radiograph(source)
    marks = []
    for v in findings.vertebrae:
        x1, y1, x2, y2 = v.box
        region = (int(x1) - 20, int(y1) - 20, int(np.ceil(x2)) + 20, int(np.ceil(y2)) + 20)
        cam = np.zeros((7, 7), np.float32)
        cam[1:4, 2:5] = 1.0
        label = f"{v.level} {v.prediction} {v.probabilities[v.prediction]:.2f}"
        state = "suspected fresh" if v.prediction == "fresh" else v.prediction
        marks.append(Mark(v.box, region, cam, label, STATE_COLOURS[state]))
    verdict = "MRI recommended" if findings.mri_recommended else "MRI not indicated by olvf"
    canvas, _ = render_overlay(
        radiograph.pixels,
        marks,
        decision=f"{verdict}: {findings.mri_reason}",
        demo_warning=DEMO_WARNING if findings.demo else None,
    )
    return np.ascontiguousarray(canvas[..., ::-1])
