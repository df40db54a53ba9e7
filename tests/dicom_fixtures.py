"""Source DICOMs, overlays and findings for the DICOM writer tests, made with what the product uses.

The source is an ``olvf.phantom`` radiograph written as DX with a patient
identity and accession number added; the overlay is drawn by
``olvf.runtime.writers.overlay.render_overlay`` from the pixels as
``olvf.runtime.inputs.reader`` reads them (MONOCHROME1 inverted there), with
the labels, colours and header the product draws; the findings put a box on
every phantom level, "fresh" where the phantom has a fresh fracture, and each
vertebra's state and the verdict come from the product's decision rule
(``olvf.runtime.steps.decision``). The classifier's numbers are made up:
these tests check how findings are written, not how they are computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from olvf.phantom import dicom_dataset, make_phantom
from olvf.runtime.inputs.reader import read_radiograph
from olvf.runtime.steps.decision import mri_decision, vertebra_states
from olvf.runtime.writers import Algorithm, StudyFindings, VertebraFinding
from olvf.runtime.writers.overlay import STATE_COLOURS, Mark, overlay_label, render_overlay
from olvf.runtime.writers.report import DEMO_WARNING
from olvf.vocabulary import CLASSES

PATIENT_NAME = "Kojima^Hanako"
PATIENT_ID = "MRN-20240917-3"
ACCESSION = "ACC-55817"
BUNDLE_SHA = "3f" * 32
OTHER_BUNDLE_SHA = "a5" * 32
OPERATING_POINT = 0.5
PROBABILITIES = {
    "normal": {"normal": 0.861234, "old": 0.091, "fresh": 0.047766},
    "old": {"normal": 0.2, "old": 0.654321, "fresh": 0.145679},
    "fresh": {"normal": 0.05, "old": 0.138765, "fresh": 0.811235},
}
#: The issue's held-out phantom 5017: top class "normal", yet p(fresh) over the operating point of 0.31, so the
#: decision sends it to MRI; the SR must call it suspected fresh, never normal.
NORMAL_ON_TOP_BUT_FRESH = {"normal": 0.5012, "old": 0.0088, "fresh": 0.49}
#: Identity values longer than their VR allows, as a system that does not check sends them (issue #27 F8: a PACS
#: refused the results of a 10,000-character Patient ID, and the node retried for two hours).
LONG_IDENTITY = {
    "patient_id": "7" * 10_000,
    "patient_name": "Longname" * 10 + "^Anna",
    "study_description": "lumbar spine lateral " * 10,
}


def write_source(
    path: Path,
    *,
    size: tuple[int, int] = (1200, 960),
    seed: int = 3,
    monochrome1: bool = False,
    patient_name: str = PATIENT_NAME,
    patient_id: str = PATIENT_ID,
    study_description: str | None = None,
    character_set: str | list[str] = "ISO_IR 100",
    fractures: dict[str, str] | None = None,
) -> tuple[Path, object]:
    """A phantom DX with a patient, an accession and a study date, as PACS would hold it."""
    phantom = make_phantom(seed=seed, fractures=fractures if fractures is not None else {"L2": "fresh"}, size=size)
    ds = dicom_dataset(phantom, monochrome1=monochrome1)
    with warnings.catch_warnings():  # LONG_IDENTITY breaks the VRs on purpose; pydicom says so
        warnings.filterwarnings("ignore", "The (PN component|value) length", UserWarning)
        ds.SpecificCharacterSet = character_set
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        if study_description is not None:
            ds.StudyDescription = study_description
        ds.PatientBirthDate = "19410203"
        ds.PatientSex = "F"
        ds.AccessionNumber = ACCESSION
        ds.StudyDate, ds.StudyTime = "20240917", "031502"
        ds.save_as(path, enforce_file_format=True)
    return path, phantom


def findings_for(
    phantom: object,
    *,
    demo: bool = True,
    sha: str = BUNDLE_SHA,
    levels: bool = True,
    operating_point: float = OPERATING_POINT,
    probabilities: Mapping[str, Mapping[str, float]] | None = None,
) -> StudyFindings:
    """A box per phantom level with its label's probabilities (``probabilities`` overrides them per level),
    and the states and verdict of the product's decision at ``operating_point``."""
    names, boxes, rows = [], [], []
    for i, truth in enumerate(phantom.levels):  # type: ignore[attr-defined]
        names.append(truth.level if levels else f"V{i + 1}")
        boxes.append(tuple(float(v) + 0.25 * (k % 2) for k, v in enumerate(truth.box)))  # sub-pixel, as detectors
        rows.append(dict((probabilities or {}).get(truth.level, PROBABILITIES[truth.label])))
    table = np.array([[row[c] for c in CLASSES] for row in rows]).reshape(-1, len(CLASSES))
    states = vertebra_states(table, CLASSES, operating_point)
    decision = mri_decision(names, table[:, CLASSES.index("fresh")], operating_point, states)
    return StudyFindings(
        vertebrae=tuple(
            VertebraFinding(name, box, state, row, 0.9 - i / 100)  # type: ignore[arg-type]
            for i, (name, box, state, row) in enumerate(zip(names, boxes, states, rows))
        ),
        mri_recommended=decision.recommended,
        mri_reason=decision.reason,
        operating_point=operating_point,
        demo=demo,
        algorithm=Algorithm("olvf", "0.1.0", sha, "onnxruntime CPUExecutionProvider fp32"),
    )


def no_vertebra(findings: StudyFindings) -> StudyFindings:
    """The same run on a film where no vertebral body was found: a verdict of "needs a reader", no findings."""
    decision = mri_decision([], np.zeros(0), findings.operating_point)
    return StudyFindings(
        (), decision.recommended, decision.reason, findings.operating_point, findings.demo, findings.algorithm
    )


def not_assessed(findings: StudyFindings, reason: str = "Body Part Examined is CHEST") -> StudyFindings:
    """The same run on a film outside the bundle's intended use: no verdict, no findings."""
    return StudyFindings((), None, reason, findings.operating_point, findings.demo, findings.algorithm)


def overlay_rgb(source: Path, findings: StudyFindings) -> np.ndarray:
    """The overlay as olvf draws it (render_overlay gives BGR), converted to RGB for the writers."""
    radiograph = read_radiograph(source)
    marks = []
    for v in findings.vertebrae:
        x1, y1, x2, y2 = v.box
        region = (int(x1) - 20, int(y1) - 20, int(np.ceil(x2)) + 20, int(np.ceil(y2)) + 20)
        cam = np.zeros((7, 7), np.float32)
        cam[1:4, 2:5] = 1.0
        label = overlay_label(v.level, v.state, v.probabilities["fresh"], findings.operating_point)
        marks.append(Mark(v.box, region, cam, label, STATE_COLOURS[v.state]))
    decision = findings.decision
    canvas, _ = render_overlay(
        radiograph.pixels,
        marks,
        decision=decision.line,
        demo_warning=DEMO_WARNING if findings.demo else None,
        headline=decision.headline,
        operating_point=findings.operating_point if decision.assessed else None,
    )
    return np.ascontiguousarray(canvas[..., ::-1])
