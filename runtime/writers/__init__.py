"""Writers of olvf's results for other systems: DICOM Secondary Capture and TID 1500 Structured Report.

They take the findings as :mod:`findings`' frozen dataclasses, so they
depend on no pipeline object:

    from olvf.runtime.writers import read_dicom_source, write_dicom_results
    source = read_dicom_source("lateral.dcm")      # NoPatientContextError for PNG / JPEG / TIFF
    write_dicom_results("olvf-out/lateral", source, overlay_bgr[..., ::-1], findings, force=False)

See ``dicom_sc`` and ``dicom_sr`` for what each object holds, ``dicom_codes``
for every code and the private scheme 99OLVF, ``dicom_uids`` for how UIDs
are made.
"""

from olvf.runtime.writers.dicom_results import SC_NAME, SR_NAME, DicomResults, build_dicom_results, write_dicom_results
from olvf.runtime.writers.dicom_source import NO_PATIENT_CONTEXT, DicomSource, NoPatientContextError, read_dicom_source
from olvf.runtime.writers.findings import Algorithm, StudyFindings, VertebraFinding

__all__ = [
    "NO_PATIENT_CONTEXT",
    "SC_NAME",
    "SR_NAME",
    "Algorithm",
    "DicomResults",
    "DicomSource",
    "NoPatientContextError",
    "StudyFindings",
    "VertebraFinding",
    "build_dicom_results",
    "read_dicom_source",
    "write_dicom_results",
]
