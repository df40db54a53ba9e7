"""The findings as a Comprehensive SR with TID 1500 (Measurement Report), built with highdicom.

Content tree (codes in :mod:`dicom_codes`; ``99OLVF`` is olvf's private scheme)::

    CONTAINER Imaging Measurement Report (TID 1500)
      language en-US; device observer (olvf, UID from the bundle); procedure reported: Imaging procedure
      CONTAINER Imaging Measurements
        CONTAINER Measurement Group (TID 1501)            the study result, one per report
          tracking identifier "olvf study result" + UID; finding site Lumbar spine; source image
          algorithm identification (TID 4019)
          NUM  99OLVF FRESH-OP-POINT        the operating point, UCUM "1"
          CODE 99OLVF MRI-RECOMMENDED       SCT Yes / No
          TEXT 99OLVF MRI-REASON            olvf's one-line reason
          TEXT 99OLVF DEMO-WARNING          only for a demo bundle
        CONTAINER Measurement Group (TID 1410)            one per vertebra
          tracking identifier (the level, e.g. "L2") + UID
          finding category Anatomical Structure; finding Vertebra; finding site SCT L2 vertebra (T12, L1-L5 only)
          algorithm identification (TID 4019), DEMO in its parameters for a demo bundle
          SCOORD Image Region POLYLINE      the box, closed, 5 points (column, row), on the source image
          NUM  99OLVF P-NORMAL / P-OLD / P-FRESH, DETECTOR-SCORE (when there was a detector), UCUM "1"
          CODE 99OLVF CLASS                 99OLVF NORMAL / OLD / FRESH
          CODE 99OLVF GRADCAM-PEAK          99OLVF CENTRE / UPPER-ENDPLATE / ...

The study result is a measurement group rather than TID 1500's root
"Qualitative Evaluations" container because that container holds CODE and
TEXT only (the operating point is a number), and because highdicom builds and
reads groups but not that container; it also keeps a report with no vertebra
found well formed. Box coordinates need no conversion: a DICOM 2D SCOORD
puts (0, 0) at the top-left corner of the top-left pixel, so olvf's
exclusive-end pixel box ``x1, y1, x2, y2`` is exactly the rectangle from
(x1, y1) to (x2, y2). The source image and the Secondary Capture are listed
as evidence (Current Requested Procedure Evidence Sequence: same study).
"""

from __future__ import annotations

import numpy as np
from highdicom.sr import (
    AlgorithmIdentification,
    ComprehensiveSR,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    GraphicTypeValues,
    ImageRegion,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    RelationshipTypeValues,
    SourceImageForMeasurementGroup,
    SourceImageForRegion,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from olvf.runtime.writers import dicom_codes as codes
from olvf.runtime.writers.dicom_sc import DEMO_TEXT, MANUFACTURER, series_description
from olvf.runtime.writers.dicom_source import DicomSource, copy_identity
from olvf.runtime.writers.dicom_uids import (
    SR_INSTANCE,
    SR_SERIES,
    STUDY_GROUP,
    bundle_uid,
    derived_uid,
    vertebra_role,
)
from olvf.runtime.writers.findings import NAMED_LEVELS, StudyFindings, VertebraFinding

SR_SERIES_NUMBER = 9002
STUDY_TRACKING_ID = "olvf study result"


def box_polyline(box: tuple[float, float, float, float]) -> np.ndarray:
    """A closed 5-point (column, row) polyline around ``box`` (x1, y1, x2, y2, exclusive ends)."""
    x1, y1, x2, y2 = box
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], dtype=np.float64)


def _algorithm(findings: StudyFindings) -> AlgorithmIdentification:
    algorithm = findings.algorithm
    parameters = [
        f"bundle manifest sha256 {algorithm.bundle_sha256}",
        f"backend {algorithm.backend}",
        f"fresh fracture operating point {findings.operating_point:g}",
    ]
    if findings.demo:
        parameters.append(DEMO_TEXT)
    return AlgorithmIdentification(name=algorithm.name, version=algorithm.version, parameters=parameters)


def _number(name: Code, value: float) -> Measurement:
    """A pure number (UCUM "1"): probabilities, scores, the operating point."""
    return Measurement(name=name, value=float(value), unit=codes.NO_UNITS)


def _text(name: Code, value: str) -> TextContentItem:
    return TextContentItem(name=name, value=value, relationship_type=RelationshipTypeValues.CONTAINS)


def _study_group(source: DicomSource, findings: StudyFindings) -> MeasurementsAndQualitativeEvaluations:
    sha = findings.algorithm.bundle_sha256
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=derived_uid(source.sop_instance_uid, sha, STUDY_GROUP), identifier=STUDY_TRACKING_ID
        ),
        finding_sites=[FindingSite(codes.LUMBAR_SPINE)],
        algorithm_id=_algorithm(findings),
        measurements=[_number(codes.OPERATING_POINT, findings.operating_point)],
        qualitative_evaluations=[QualitativeEvaluation(codes.MRI_RECOMMENDED, _mri_value(findings))],
        source_images=[
            SourceImageForMeasurementGroup(source.sop_class_uid, source.sop_instance_uid, **_frames(source))
        ],
    )
    # TID 1501 allows TEXT qualitative evaluations; highdicom's constructor builds only CODE ones.
    group[0].ContentSequence.append(_text(codes.MRI_REASON, findings.mri_reason))
    if findings.outside_intended_use:
        group[0].ContentSequence.append(_text(codes.OUTSIDE_INTENDED_USE, findings.outside_intended_use))
    if findings.demo:
        group[0].ContentSequence.append(_text(codes.DEMO_WARNING, DEMO_TEXT))
    return group


def _mri_value(findings: StudyFindings) -> Code:
    if findings.mri_recommended is None:
        return codes.NOT_ASSESSED
    return codes.YES if findings.mri_recommended else codes.NO


def _frames(source: DicomSource) -> dict[str, list[int]]:
    return {"referenced_frame_numbers": [1]} if source.multi_frame else {}


def _vertebra_group(
    index: int, vertebra: VertebraFinding, source: DicomSource, findings: StudyFindings
) -> PlanarROIMeasurementsAndQualitativeEvaluations:
    rows, columns = source.size
    x1, y1, x2, y2 = vertebra.box
    if x2 > columns or y2 > rows:
        raise ValueError(f"{vertebra.level} box {vertebra.box} reaches past the source image ({columns} x {rows})")
    measurements = [_number(codes.PROBABILITY_NAMES[c], p) for c, p in vertebra.probabilities.items()]
    if vertebra.detector_score is not None:
        measurements.append(_number(codes.DETECTOR_SCORE, vertebra.detector_score))
    sha = findings.algorithm.bundle_sha256
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=derived_uid(source.sop_instance_uid, sha, vertebra_role(index, vertebra.level)),
            identifier=vertebra.level,
        ),
        referenced_region=ImageRegion(
            graphic_type=GraphicTypeValues.POLYLINE,
            graphic_data=box_polyline(vertebra.box),
            source_image=SourceImageForRegion(source.sop_class_uid, source.sop_instance_uid, **_frames(source)),
        ),
        finding_category=codes.ANATOMICAL_STRUCTURE,
        finding_type=codes.VERTEBRA,
        # Only a named level has a site; V1.. and whole-image crops claim none rather than guess.
        finding_sites=[FindingSite(codes.LEVEL_SITES[vertebra.level])] if vertebra.level in NAMED_LEVELS else None,
        algorithm_id=_algorithm(findings),
        measurements=measurements,
        qualitative_evaluations=[
            QualitativeEvaluation(codes.CLASS_NAME, codes.CLASS_VALUES[vertebra.prediction]),
            QualitativeEvaluation(codes.GRADCAM_PEAK, codes.REGION_VALUES[vertebra.gradcam_peak_region]),
        ],
    )


def build_measurement_report(source: DicomSource, findings: StudyFindings, sc: Dataset) -> ComprehensiveSR:
    """The Comprehensive SR of ``findings`` on ``source``, with ``sc`` (its Secondary Capture) as evidence."""
    algorithm = findings.algorithm
    sha = algorithm.bundle_sha256
    observer = ObserverContext(
        observer_type=codes.DEVICE,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=bundle_uid(sha, "device-observer"),
            name=algorithm.name,
            manufacturer_name=MANUFACTURER,
            model_name=f"{algorithm.name} {algorithm.version}",
        ),
    )
    groups: list[MeasurementsAndQualitativeEvaluations | PlanarROIMeasurementsAndQualitativeEvaluations] = [
        _study_group(source, findings)
    ]
    groups += [_vertebra_group(i, v, source, findings) for i, v in enumerate(findings.vertebrae)]
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=codes.IMAGING_PROCEDURE,
        imaging_measurements=groups,
    )
    sr = ComprehensiveSR(
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
    )
    copy_identity(source.header, sr)
    return sr
