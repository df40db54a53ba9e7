"""Writers: study results into files people and systems read.

The report, overlay and heatmaps (:mod:`.study_folder`) are built from the
pipeline's :mod:`olvf.runtime.study.results` objects and recompute nothing. The
DICOM writers (Secondary Capture and TID 1500 Structured Report) take the
findings as :mod:`.findings`' frozen dataclasses; :mod:`.dicom_study`
derives those from a study result. None imports a command-line module.

    from olvf.runtime.writers import read_dicom_source, write_dicom_results
    source = read_dicom_source("lateral.dcm")      # NoPatientContextError for PNG / JPEG / TIFF
    write_dicom_results("olvf-out/lateral", source, overlay_bgr[..., ::-1], findings, force=False)

See ``dicom_sc`` and ``dicom_sr`` for what each object holds, ``dicom_codes``
for every code and the private scheme 99OLVF, ``dicom_uids`` for how UIDs
are made.
"""

from __future__ import annotations

import importlib
from typing import Any

# The DICOM writers load highdicom; a run without --dicom should not pay for it, so they load on first use.
_LAZY = {
    "SC_NAME": "dicom_results",
    "SR_NAME": "dicom_results",
    "DicomResults": "dicom_results",
    "build_dicom_results": "dicom_results",
    "write_dicom_results": "dicom_results",
    "NO_PATIENT_CONTEXT": "dicom_source",
    "DicomSource": "dicom_source",
    "NoPatientContextError": "dicom_source",
    "read_dicom_source": "dicom_source",
    "Algorithm": "findings",
    "StudyFindings": "findings",
    "VertebraFinding": "findings",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = sorted(_LAZY)
