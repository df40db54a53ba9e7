"""The DICOM image olvf's results belong to: read its header, and carry its patient and study over.

Only the header is read (``stop_before_pixels``): the pipeline has decoded the
pixels already. PNG, JPEG and TIFF inputs have no patient or study to file
results under, so they raise :class:`NoPatientContextError`, whose message
(:data:`NO_PATIENT_CONTEXT`) names no file, so a caller can print it once for
all such inputs.

Patient data stays inside the datasets: nothing here logs, prints or puts a
value of the source into a message. pydicom's warnings while reading the
header are dropped, because they quote the offending values (a malformed
patient name would reach the console).
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from olvf.errors import InputError
from olvf.runtime.inputs.admission import read_head, sniff

NO_PATIENT_CONTEXT = (
    "PNG, JPEG and TIFF inputs carry no patient or study, so no DICOM results are written for them; "
    "give olvf the DICOM file from PACS to get a Secondary Capture and a Structured Report"
)

# Root attributes of the Patient, Clinical Trial Subject, General Study, Patient Study and Clinical
# Trial Study modules (PS3.3 C.7.1.1, C.7.1.3, C.7.2.1, C.7.2.2, C.7.2.3): the same modules in the
# Secondary Capture Image and Comprehensive SR IODs. They are copied element by element, value and VR
# as the source has them, so a name in Japanese or a character set highdicom does not check survives.
PATIENT_KEYWORDS: tuple[str, ...] = (
    "ReferencedPatientSequence", "PatientName", "PatientID", "IssuerOfPatientID", "TypeOfPatientID",
    "IssuerOfPatientIDQualifiersSequence", "SourcePatientGroupIdentificationSequence",
    "GroupOfPatientsIdentificationSequence", "PatientBirthDate", "PatientBirthTime",
    "PatientBirthDateInAlternativeCalendar", "PatientDeathDateInAlternativeCalendar", "PatientAlternativeCalendar",
    "PatientSex", "QualityControlSubject", "StrainDescription", "StrainNomenclature", "StrainStockSequence",
    "StrainAdditionalInformation", "StrainCodeSequence", "GeneticModificationsSequence", "OtherPatientNames",
    "OtherPatientIDsSequence", "ReferencedPatientPhotoSequence", "EthnicGroupCodeSequence",
    "PatientSpeciesDescription", "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence",
    "BreedRegistrationSequence", "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization",
    "PatientComments", "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    # Clinical Trial Subject
    "ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName",
    "IssuerOfClinicalTrialProtocolID", "OtherClinicalTrialProtocolIDsSequence", "ClinicalTrialSiteID",
    "ClinicalTrialSiteName", "IssuerOfClinicalTrialSiteID", "ClinicalTrialSubjectID",
    "IssuerOfClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "IssuerOfClinicalTrialSubjectReadingID",
    "ClinicalTrialProtocolEthicsCommitteeName", "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
)  # fmt: skip
STUDY_KEYWORDS: tuple[str, ...] = (
    "StudyDate", "StudyTime", "AccessionNumber", "IssuerOfAccessionNumberSequence", "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName", "ConsultingPhysicianIdentificationSequence",
    "StudyDescription", "ProcedureCodeSequence", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
    "NameOfPhysiciansReadingStudy", "PhysiciansReadingStudyIdentificationSequence", "ReferencedStudySequence",
    "StudyInstanceUID", "StudyID", "RequestingService", "RequestingServiceCodeSequence",
    "ReasonForPerformedProcedureCodeSequence",
    # Patient Study
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "PatientAge", "PatientSize",
    "PatientSizeCodeSequence", "PatientBodyMassIndex", "MeasuredAPDimension", "MeasuredLateralDimension",
    "PatientWeight", "MedicalAlerts", "Allergies", "Occupation", "SmokingStatus", "AdditionalPatientHistory",
    "PregnancyStatus", "LastMenstrualDate", "PatientSexNeutered", "ReasonForVisit", "ReasonForVisitCodeSequence",
    "AdmissionID", "IssuerOfAdmissionIDSequence", "ServiceEpisodeID", "ServiceEpisodeDescription",
    "IssuerOfServiceEpisodeIDSequence", "PatientState",
    # Clinical Trial Study
    "ClinicalTrialTimePointID", "ClinicalTrialTimePointDescription", "LongitudinalTemporalOffsetFromEvent",
    "LongitudinalTemporalEventType", "ClinicalTrialTimePointTypeCodeSequence", "IssuerOfClinicalTrialTimePointID",
    "ConsentForClinicalTrialUseSequence",
)  # fmt: skip
# Type 2 in these modules: present in every object, empty when the source has no value.
TYPE2_KEYWORDS: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip
_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns")
_IMAGE_KINDS = ("png", "jpeg", "tiff")


class NoPatientContextError(InputError):
    """The input is a plain image: there is no patient or study to file DICOM results under."""

    def __init__(self, path: Path) -> None:
        super().__init__(NO_PATIENT_CONTEXT)
        self.path = path


@dataclass(frozen=True, eq=False)  # a Dataset has no meaningful equality here
class DicomSource:
    """The header of the radiograph the results are about (no pixel data). Treat it as read-only."""

    header: Dataset

    @property
    def sop_class_uid(self) -> str:
        return str(self.header.SOPClassUID)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.header.SOPInstanceUID)

    @property
    def study_instance_uid(self) -> str:
        return str(self.header.StudyInstanceUID)

    @property
    def series_instance_uid(self) -> str:
        return str(self.header.SeriesInstanceUID)

    @property
    def size(self) -> tuple[int, int]:
        """(rows, columns) of the source image: the frame of every box."""
        return int(self.header.Rows), int(self.header.Columns)

    @property
    def multi_frame(self) -> bool:
        return int(self.header.get("NumberOfFrames") or 1) > 1

    def stand_in(self) -> Dataset:
        """The source's references with an empty identity, for highdicom's constructors.

        highdicom checks and logs a patient name it finds doubtful (one
        without a caret, valid DICOM all the same) and warns with the name in
        the message; building from this stand-in and then copying the
        identity with :func:`copy_identity` keeps the name off the console.
        """
        ds = Dataset()
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns"):
            setattr(ds, keyword, self.header[keyword].value)
        for keyword in TYPE2_KEYWORDS:
            setattr(ds, keyword, "")
        return ds


def read_dicom_source(path: str | os.PathLike[str]) -> DicomSource:
    """Read the header of a DICOM radiograph; raise for a plain image or a DICOM that cannot carry results.

    Raises :class:`NoPatientContextError` for PNG / JPEG / TIFF and
    :class:`InputError` for a file that is no DICOM or lacks the UIDs and
    size that results must reference, or holds them in a form that does not
    decode.
    """
    path = Path(path)
    kind = sniff(read_head(path))
    if kind in _IMAGE_KINDS:
        raise NoPatientContextError(path)
    if kind is None:
        raise InputError(f"{path}: not a DICOM file, so no DICOM results can be written for it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings quote values, patient data among them
            header = pydicom.dcmread(path, stop_before_pixels=True, force=kind == "raw-dicom")
    except (InvalidDicomError, ValueError, EOFError, struct.error, OverflowError):
        raise InputError(f"{path}: the DICOM header cannot be parsed; copy the file again from PACS") from None
    for keyword in _REQUIRED:
        try:
            present = bool(header.get(keyword))
        except Exception as exc:  # noqa: BLE001 - pydicom decodes lazily: a wrong VR (Rows as FD) raises here
            # The class only: a converter's message quotes the raw bytes.
            raise InputError(
                f"{path}: the DICOM header's {keyword} cannot be decoded ({type(exc).__name__}); "
                "the file is damaged, export it again from PACS"
            ) from None
        if not present:
            raise InputError(
                f"{path}: the DICOM file has no {keyword}, which results filed with its study must reference; "
                "export it again from PACS"
            )
    return DicomSource(header)


#: The most characters a value of these VRs may hold (PS3.5 table 6.2-1; PN: per component group). Longer values
#: come from systems that do not check (a 10,000-character Patient ID was seen); a PACS refuses the results.
VR_MAX_CHARACTERS: dict[str, int] = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240}


def _too_long(element: DataElement) -> bool:
    limit = VR_MAX_CHARACTERS.get(element.VR)
    if limit is None or element.value is None:
        return False
    parts = [str(v) for v in element.value] if element.VM > 1 else [str(element.value)]
    if element.VR == "PN":
        parts = [group for part in parts for group in part.split("=")]
    return any(len(part) > limit for part in parts)


def _cut_name_group(group: str, limit: int) -> str:
    """A PN component group cut to ``limit`` characters by shortening its longest components, so family and
    given name both survive ("Verylongfamilyname...^Anna", not a single component without its "^")."""
    components = group.split("^")
    while len("^".join(components)) > limit:
        longest = max(range(len(components)), key=lambda i: len(components[i]))
        excess = len("^".join(components)) - limit
        if not components[longest]:
            return "^".join(components)[:limit]
        components[longest] = components[longest][: max(0, len(components[longest]) - excess)]
    return "^".join(components)


def _cut(element: DataElement) -> None:
    limit = VR_MAX_CHARACTERS[element.VR]

    def cut(value: str) -> str:
        if element.VR == "PN":
            return "=".join(_cut_name_group(group, limit) for group in value.split("="))
        return value[:limit]

    if element.VM > 1:
        element.value = [cut(str(v)) for v in element.value]
    else:
        element.value = cut(str(element.value))


def _walk_identity(dataset: Dataset, visit: Callable[[str, DataElement], None]) -> None:
    """``visit(name, element)`` for each text element of the patient and study attributes, in sequences too."""

    def walk(element: DataElement, name: str) -> None:
        if element.VR == "SQ":
            for item in element.value or []:
                for inner in item:
                    walk(inner, f"{name}.{inner.keyword}")
        elif element.VR in VR_MAX_CHARACTERS:
            visit(name, element)

    with warnings.catch_warnings():  # pydicom's "exceeds the maximum length" on reading: handled here
        warnings.simplefilter("ignore", UserWarning)
        for keyword in (*PATIENT_KEYWORDS, *STUDY_KEYWORDS):
            if keyword in dataset:
                walk(dataset[keyword], keyword)


def identity_cuts(source: Dataset) -> tuple[str, ...]:
    """The keywords of the source's patient and study attributes longer than their VR allows, which the results
    carry cut to that length (:func:`copy_identity`). Names only: the values are patient data."""
    found: list[str] = []
    _walk_identity(source, lambda name, element: found.append(name) if _too_long(element) else None)
    return tuple(dict.fromkeys(found))


def copy_identity(source: Dataset, target: Dataset) -> None:
    """Make ``target``'s patient and study those of ``source``: every attribute of those modules, as stored.

    Attributes the source lacks are removed from ``target``, except the type 2
    ones, which stay present and empty. The Specific Character Set goes with
    them, since it is what their bytes mean. A value longer than its VR allows
    is cut to that length (:func:`identity_cuts` names them): a PACS refuses a
    non-conforming object, and results that never arrive help no one.
    """
    for keyword in (*PATIENT_KEYWORDS, *STUDY_KEYWORDS, "SpecificCharacterSet"):
        if keyword in target:
            del target[keyword]
        if keyword in source:
            target[keyword] = deepcopy(source[keyword])
    _walk_identity(target, lambda _, element: _cut(element) if _too_long(element) else None)
    for keyword in TYPE2_KEYWORDS:
        if keyword not in target:
            setattr(target, keyword, None)
