"""A study result as the DICOM writers take it: findings rounded exactly as ``report.json`` holds them.

The SR must say what the report says, so boxes and probabilities go through
the report's own rounding (:func:`olvf.runtime.writers.report.vertebra_reports`).
"""

from __future__ import annotations

from olvf import __version__
from olvf.runtime.study.results import StudyResult
from olvf.runtime.writers.findings import Algorithm, StudyFindings, VertebraFinding
from olvf.runtime.writers.report import ReportContext, vertebra_reports


def study_findings(study: StudyResult, context: ReportContext) -> StudyFindings:
    backend = context.backend
    rows = vertebra_reports(study, context.classes)
    return StudyFindings(
        vertebrae=tuple(
            VertebraFinding(
                level=row["level"],
                box=tuple(row["box"]),
                prediction=row["prediction"],
                probabilities=row["probabilities"],
                gradcam_peak_region=row["gradcam"]["peak_region"],
                detector_score=row["detector_score"],
            )
            for row in rows
        ),
        mri_recommended=study.decision.recommended,
        mri_reason=study.decision.reason,
        outside_intended_use=study.applicability.reason if study.applicability.overridden else None,
        operating_point=study.decision.operating_point,
        demo=context.demo,
        algorithm=Algorithm(
            name="olvf",
            version=__version__,
            bundle_sha256=context.bundle["manifest_sha256"],
            backend=f"{backend['name']} {backend['device']} {backend['precision']}",
        ),
    )
