"""The findings as a Comprehensive 3D SR with TID 1500 (Measurement Report), built with highdicom, as IHE AIR asks.

Content tree (codes in :mod:`dicom_codes`; ``99OLVF`` is olvf's private
scheme), every container SEPARATE, so a viewer (dcmtk's ``dsr2html``, for
one) shows each value under its concept name::

    CONTAINER Imaging Measurement Report (TID 1500)
      language en-US; device observer (TID 1004: olvf, UID from the bundle); procedure reported: Imaging procedure
      CONTAINER Imaging Measurements                      absent where olvf found no vertebra
        CONTAINER Measurement Group (TID 1410)            one per vertebra, in detection order
          tracking identifier (the level, e.g. "L2") + UID
          CODE Finding                       99OLVF SUSPECTED-FRESH / OLD / NORMAL: the decision's state
          SCOORD Image Region POLYLINE       the box, closed, 5 points (column, row), on the source image
          IMAGE Illustration of ROI          the Secondary Capture (the overlay shows the box and its label)
          finding site SCT L2 vertebra (T12, L1-L5 only)
          algorithm identification (TID 4019): name, version, parameters (DEMO first for a demo bundle,
            the bundle's sha256, the backend, the operating point)
          NUM  99OLVF P-FRESH, P-OLD, P-NORMAL, DETECTOR-SCORE (with a detector), UCUM "%"
      CONTAINER Qualitative Evaluations (TID 1500 row 12)
        CODE 99OLVF DEMO-WARNING = 99OLVF DEMO          only for a demo bundle, first
        CODE 99OLVF MRI-RECOMMENDED = SCT Yes / No, or 99OLVF NOT-ASSESSED
        TEXT DCM Recommendation            the decision's headline ("Suspected fresh fracture at L3, L4: ...")
        TEXT 99OLVF MRI-REASON             the decision's reason (levels and p(fresh))
        TEXT 99OLVF OUTSIDE-INTENDED-USE   only when the research override gave findings

Each row is one PixelMed's validator (and PS3.16) has in its template: the
state is the region's Finding, the study's conclusions are TID 1500's own
Qualitative Evaluations, and what has no standard code has a private one
(a qualitative evaluation inside a measurement group is a row of the current
standard that the validator Debian ships does not know). Numbers are a
measurement group's (a qualitative evaluation holds CODE and TEXT only).
Every measurement group is a vertebra's region: the study's result is no
group of its own, because OHIF 3.13 takes every group to have an image
region and opens nothing of an SR with one that has none (tests/viewer).
The operating point is in each group's algorithm parameters and in the
decision's reason.
The top class and the Grad-CAM peak region are in report.json, not here: the
SR says what olvf decided (the state), and Grad-CAM is a picture (the
Secondary Capture, referenced from each region).

Probabilities are rounded to what they mean (:func:`shown_probabilities`):
two decimals, more where fewer would print p(fresh) on the wrong side of the
operating point, or p(old) and p(normal) in the wrong order, which decides
between old and normal; the numbers are those of the decision's reason.

Box coordinates need no conversion: a DICOM 2D SCOORD puts (0, 0) at the
top-left corner of the top-left pixel, so olvf's exclusive-end pixel box
``x1, y1, x2, y2`` is exactly the rectangle from (x1, y1) to (x2, y2). The
source image and the Secondary Capture are listed as evidence (Current
Requested Procedure Evidence Sequence: same study). olvf is the Contributing
Equipment (Processing Equipment), its Model Name and Software Versions
those of TID 4019, its Device UID that of TID 1004 (IHE AIR Rev 1.3).
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import numpy as np
from highdicom.sr import (
    AlgorithmIdentification,
    CodeContentItem,
    Comprehensive3DSR,
    ContainerContentItem,
    ContentSequence,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    GraphicTypeValues,
    ImageContentItem,
    ImageRegion,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    RelationshipTypeValues,
    SourceImageForRegion,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from olvf.runtime.steps.decision import compared
from olvf.runtime.writers import dicom_codes as codes
from olvf.runtime.writers.dicom_sc import DEMO_TEXT, DEVICE_ROLE, MANUFACTURER, series_description, stamp
from olvf.runtime.writers.dicom_source import DicomSource, copy_identity
from olvf.runtime.writers.dicom_uids import (
    SR_INSTANCE,
    SR_SERIES,
    bundle_uid,
    derived_uid,
    vertebra_role,
)
from olvf.runtime.writers.findings import NAMED_LEVELS, StudyFindings, VertebraFinding

SR_SERIES_NUMBER = 9002
CONTAINS = RelationshipTypeValues.CONTAINS


def box_polyline(box: tuple[float, float, float, float]) -> np.ndarray:
    """A closed 5-point (column, row) polyline around ``box`` (x1, y1, x2, y2, exclusive ends)."""
    x1, y1, x2, y2 = box
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], dtype=np.float64)


def shown_probabilities(vertebra: VertebraFinding, operating_point: float) -> dict[str, float]:
    """The vertebra's probabilities (fresh, old, normal), rounded to what they mean, as the SR holds them
    (there in percent).

    p(fresh) with as many decimals as its order against the operating point needs
    (:func:`~olvf.runtime.steps.decision.compared`, as the decision's reason prints it; one exactly at the
    operating point is written as it); p(old) and p(normal) as many as their order needs.
    """
    p = vertebra.probabilities
    fresh = p["fresh"] if p["fresh"] == operating_point else float(compared(p["fresh"], operating_point)[0])
    old, normal = (float(text) for text in compared(p["old"], p["normal"]))
    return {"fresh": fresh, "old": old, "normal": normal}


def _algorithm(findings: StudyFindings) -> AlgorithmIdentification:
    algorithm = findings.algorithm
    parameters = [DEMO_TEXT] if findings.demo else []
    parameters += [
        f"bundle manifest sha256 {algorithm.bundle_sha256}",
        f"backend {algorithm.backend}",
        f"fresh fracture operating point {findings.operating_point:g}",
    ]
    return AlgorithmIdentification(name=algorithm.name, version=algorithm.version, parameters=parameters)


def percent(name: Code, fraction: float) -> Measurement:
    """A probability or score as a percentage (UCUM "%"), its decimals those of ``fraction`` less two.

    Not the pure number "1": OHIF prints a value with its unit's code and leaves out a value of 0, so a
    p(fresh) of 0 read "Probability of fresh ...: 1" there; in percent it reads "...: %", no number at all,
    and 0.80 reads "80.00 %" rather than "0.80 1".
    """
    return Measurement(name=name, value=float(Decimal(repr(float(fraction))).scaleb(2)), unit=codes.PERCENT)


def _frames(source: DicomSource) -> dict[str, list[int]]:
    return {"referenced_frame_numbers": [1]} if source.multi_frame else {}


def _vertebra_group(
    index: int, vertebra: VertebraFinding, source: DicomSource, findings: StudyFindings, sc: Dataset
) -> PlanarROIMeasurementsAndQualitativeEvaluations:
    rows, columns = source.size
    x1, y1, x2, y2 = vertebra.box
    if x2 > columns or y2 > rows:
        raise ValueError(f"{vertebra.level} box {vertebra.box} reaches past the source image ({columns} x {rows})")
    shown = shown_probabilities(vertebra, findings.operating_point)
    measurements = [percent(codes.PROBABILITY_NAMES[name], shown[name]) for name in codes.PROBABILITY_NAMES]
    if vertebra.detector_score is not None:
        measurements.append(percent(codes.DETECTOR_SCORE, round(vertebra.detector_score, 2)))
    sha = findings.algorithm.bundle_sha256
    group = PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=derived_uid(source.sop_instance_uid, sha, vertebra_role(index, vertebra.level)),
            identifier=vertebra.level,
        ),
        referenced_region=ImageRegion(
            graphic_type=GraphicTypeValues.POLYLINE,
            graphic_data=box_polyline(vertebra.box),
            source_image=SourceImageForRegion(source.sop_class_uid, source.sop_instance_uid, **_frames(source)),
        ),
        finding_type=codes.STATE_VALUES[vertebra.state],
        # Only a named level has a site; V1.. and whole-image crops claim none rather than guess.
        finding_sites=[FindingSite(codes.LEVEL_SITES[vertebra.level])] if vertebra.level in NAMED_LEVELS else None,
        algorithm_id=_algorithm(findings),
        measurements=measurements,
    )
    group[0].ContentSequence.append(
        ImageContentItem(
            name=codes.ILLUSTRATION_OF_ROI,
            referenced_sop_class_uid=sc.SOPClassUID,
            referenced_sop_instance_uid=sc.SOPInstanceUID,
            relationship_type=CONTAINS,
        )
    )
    return group


def _mri_value(findings: StudyFindings) -> Code:
    if findings.mri_recommended is None:
        return codes.NOT_ASSESSED
    return codes.YES if findings.mri_recommended else codes.NO


def _conclusions(findings: StudyFindings) -> ContainerContentItem:
    """TID 1500's Qualitative Evaluations: DEMO first, the MRI call, and the decision's words for it."""
    items: list[CodeContentItem | TextContentItem] = []
    if findings.demo:
        items.append(CodeContentItem(name=codes.DEMO_WARNING, value=codes.DEMO, relationship_type=CONTAINS))
    items.append(CodeContentItem(name=codes.MRI_RECOMMENDED, value=_mri_value(findings), relationship_type=CONTAINS))
    items.append(
        TextContentItem(name=codes.RECOMMENDATION, value=findings.decision.headline, relationship_type=CONTAINS)
    )
    items.append(TextContentItem(name=codes.MRI_REASON, value=findings.mri_reason, relationship_type=CONTAINS))
    if findings.outside_intended_use and findings.mri_recommended is not None:
        outside = TextContentItem(
            name=codes.OUTSIDE_INTENDED_USE, value=findings.outside_intended_use, relationship_type=CONTAINS
        )
        items.append(outside)
    container = ContainerContentItem(
        name=codes.QUALITATIVE_EVALUATIONS, is_content_continuous=False, relationship_type=CONTAINS
    )
    container.ContentSequence = ContentSequence(items)
    return container


def _separate(item: Dataset) -> None:
    """Every container SEPARATE: its items are findings of their own, not one sentence."""
    if item.get("ValueType") == "CONTAINER":
        item.ContinuityOfContent = "SEPARATE"
    for child in item.get("ContentSequence", []):
        _separate(child)


def build_measurement_report(
    source: DicomSource, findings: StudyFindings, sc: Dataset, when: datetime.datetime | None = None
) -> Comprehensive3DSR:
    """The Comprehensive 3D SR of ``findings`` on ``source``, with ``sc`` (its Secondary Capture) as evidence.

    ``when``: the moment the results were made (now by default), its Series, Content and Instance Creation
    Date/Time.
    """
    algorithm = findings.algorithm
    sha = algorithm.bundle_sha256
    when = when or datetime.datetime.now()
    observer = ObserverContext(
        observer_type=codes.DEVICE,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=bundle_uid(sha, DEVICE_ROLE),
            name=algorithm.name,
            manufacturer_name=MANUFACTURER,
            model_name=algorithm.name,  # = Contributing Equipment's Manufacturer's Model Name (IHE AIR)
        ),
    )
    groups: list[PlanarROIMeasurementsAndQualitativeEvaluations | MeasurementsAndQualitativeEvaluations]
    groups = [_vertebra_group(i, v, source, findings, sc) for i, v in enumerate(findings.vertebrae)]
    # highdicom asks for a group; TID 1500 does not where Qualitative Evaluations are present (row 6's
    # condition). A study with no vertebra gets no Imaging Measurements container, rather than a group
    # without a region that OHIF cannot open.
    placeholder = TrackingIdentifier(
        identifier="none", uid=derived_uid(source.sop_instance_uid, sha, SR_INSTANCE) + ".1"
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=codes.IMAGING_PROCEDURE,
        imaging_measurements=groups or [MeasurementsAndQualitativeEvaluations(tracking_identifier=placeholder)],
    )
    if not groups:
        kept = [i for i in report[0].ContentSequence if i.name != codes.IMAGING_MEASUREMENTS]
        report[0].ContentSequence = ContentSequence(kept)
    report[0].ContentSequence.append(_conclusions(findings))
    _separate(report[0])
    sr = Comprehensive3DSR(
        evidence=[source.stand_in(), sc],
        content=report[0],
        series_instance_uid=derived_uid(source.sop_instance_uid, sha, SR_SERIES),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=derived_uid(source.sop_instance_uid, sha, SR_INSTANCE),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,  # every vertebra olvf found is in it
        is_final=False,  # machine findings for a reader, not the definitive report
        is_verified=False,
        series_description=series_description("findings SR", findings),
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        coding_schemes=[codes.coding_scheme()],
        series_date=when.date(),
        series_time=when.time(),
        content_date=when.date(),
        content_time=when.time(),
    )
    copy_identity(source.header, sr)
    stamp(sr, findings, when)
    return sr
