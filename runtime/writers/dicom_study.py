"""A study result as the DICOM writers take it: findings rounded exactly as ``report.json`` holds them.

The SR must say what the report says, so boxes and probabilities come from
the report's own records (:func:`olvf.runtime.writers.report.vertebra_records`),
and each vertebra's state and the verdict from the study's decision.
"""

from __future__ import annotations

from olvf import __version__
from olvf.runtime.study.results import StudyResult
from olvf.runtime.writers.findings import Algorithm, StudyFindings, VertebraFinding
from olvf.runtime.writers.report import ReportContext, vertebra_records


def study_findings(study: StudyResult, context: ReportContext) -> StudyFindings:
    backend = context.backend
    records = vertebra_records(study, context.classes) if study.assessed else ()
    findings = StudyFindings(
        vertebrae=tuple(
            VertebraFinding(
                level=record.level,
                box=record.box,
                state=record.shown_as,
                probabilities=record.probabilities,
                detector_score=record.detector_score,
            )
            for record in records
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
    if findings.mri_levels != study.decision.levels:  # a bug: both come from the decision's states
        raise ValueError(f"DICOM findings name {findings.mri_levels}, the decision {study.decision.levels}")
    return findings
