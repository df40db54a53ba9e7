"""Every coded concept olvf writes, and where each comes from.

Standard codes are taken from pydicom's bundled code dictionary
(``pydicom.sr.codedict``, generated from DICOM PS3.16), never typed by hand,
so a code that DICOM does not list cannot slip in. The one exception is a
template's own concept name that no context group lists, which the
dictionary therefore lacks (:data:`TEMPLATE_CODES`, each with its template
row). The vertebra levels are SNOMED CT codes of CID 7603 ("Spine Anatomic
Sites" context group members, as the dictionary records): T12 23215003, L1
66794005, L2 14293000, L3 36470004, L4 11994002, L5 49668003.

DICOM has no codes for what olvf says about a vertebra (suspected fresh,
old or no osteoporotic fracture), for its probabilities, for the MRI
recommendation or for a demonstration model. They come from a private coding
scheme, designator ``99OLVF`` (PS3.16 section 8: designators beginning with
"99" are for private schemes), declared in each SR's Coding Scheme
Identification Sequence and listed in docs/reference/dicom-objects.md.
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from olvf.runtime.steps.decision import NORMAL, OLD, SUSPECTED_FRESH

SCHEME = "99OLVF"
# 2: the vertebra's state (SUSPECTED-FRESH) replaced the top class (FRESH, CLASS); Grad-CAM regions and the
# class concept left the SR; DEMO became a coded value; OUTSIDE-INTENDED-USE (20 characters, over the 16 of a Code
# Value) became OUTSIDE-USE.
SCHEME_VERSION = "2"


def _private(value: str, meaning: str) -> Code:
    return Code(value=value, scheme_designator=SCHEME, meaning=meaning)


def coding_scheme() -> CodingSchemeIdentificationItem:
    """The Coding Scheme Identification Sequence item that declares 99OLVF (a new item per document).

    No Coding Scheme UID: highdicom, following PS3.3 C.12.1, writes one only for a registered scheme.
    """
    return CodingSchemeIdentificationItem(
        designator=SCHEME,
        name="olvf findings",
        version=SCHEME_VERSION,
        responsible_organization="olvf project",
    )


# Standard codes: attribute lookups in pydicom's dictionary, which fail at import for a code DICOM does not list.

LEVEL_SITES: dict[str, Code] = {
    "T12": codes.SCT.T12Vertebra,
    "L1": codes.SCT.L1Vertebra,
    "L2": codes.SCT.L2Vertebra,
    "L3": codes.SCT.L3Vertebra,
    "L4": codes.SCT.L4Vertebra,
    "L5": codes.SCT.L5Vertebra,
}
IMAGING_PROCEDURE = codes.SCT.ImagingProcedure  # CID 100 has no lateral lumbar radiograph
YES = codes.SCT.Yes
NO = codes.SCT.No
PERCENT = codes.UCUM.Percent  # probabilities and scores (dicom_sr.percent says why not UCUM "1")
DEVICE = codes.DCM.Device
IMAGING_MEASUREMENTS = codes.DCM.ImagingMeasurements  # TID 1500 row 6: the vertebrae's groups
FINDING = codes.DCM.Finding  # TID 1410 row 3b: what the region holds
ILLUSTRATION_OF_ROI = codes.DCM.IllustrationOfROI  # TID 1410 row 9: the Secondary Capture shows the region
RECOMMENDATION = codes.DCM.Recommendation  # the verdict in clinical words
PROCESSING_EQUIPMENT = codes.DCM.ProcessingEquipment  # Contributing Equipment purpose, as IHE AIR asks
SOURCE_FOR_PROCESSING = codes.DCM.SourceImageForImageProcessingOperation  # CID 7202
SPATIAL_RESAMPLING = codes.DCM.SpatialResampling  # CID 7203

#: TID 1500 row 12's container: the study's conclusions, CODE and TEXT items (in no context group, so not
#: in pydicom's dictionary; the concept name is the template's own).
QUALITATIVE_EVALUATIONS = Code(value="C0034375", scheme_designator="UMLS", meaning="Qualitative Evaluations")
TEMPLATE_CODES: tuple[Code, ...] = (QUALITATIVE_EVALUATIONS,)

# --- the private scheme ---------------------------------------------------------------------------
#: A vertebra's Finding: its state, the decision's word for it (olvf.runtime.steps.decision).
STATE_VALUES: dict[str, Code] = {
    SUSPECTED_FRESH: _private("SUSPECTED-FRESH", "Suspected fresh osteoporotic vertebral fracture"),
    OLD: _private("OLD", "Old (healed) osteoporotic vertebral fracture"),
    NORMAL: _private("NORMAL", "No osteoporotic vertebral fracture"),
}
PROBABILITY_NAMES: dict[str, Code] = {
    "fresh": _private("P-FRESH", "Probability of fresh osteoporotic vertebral fracture"),
    "old": _private("P-OLD", "Probability of old osteoporotic vertebral fracture"),
    "normal": _private("P-NORMAL", "Probability of no osteoporotic vertebral fracture"),
}
DETECTOR_SCORE = _private("DETECTOR-SCORE", "Vertebral body detector confidence")
MRI_RECOMMENDED = _private("MRI-RECOMMENDED", "MRI recommended to tell fresh from old fracture")
MRI_REASON = _private("MRI-REASON", "Reason for the MRI recommendation")
DEMO_WARNING = _private("DEMO-WARNING", "Demonstration model warning")
DEMO = _private("DEMO", "DEMO: trained on synthetic phantoms only, not for diagnosis")
#: the value of MRI-RECOMMENDED for a study olvf did not assess (never NO: "not assessed" is no negative finding)
NOT_ASSESSED = _private("NOT-ASSESSED", "Not assessed: outside the intended use of the algorithm")
OUTSIDE_INTENDED_USE = _private("OUTSIDE-USE", "Result given outside the intended use (research override)")

PRIVATE_CODES: tuple[Code, ...] = (
    *STATE_VALUES.values(),
    *PROBABILITY_NAMES.values(),
    DETECTOR_SCORE,
    MRI_RECOMMENDED,
    MRI_REASON,
    DEMO_WARNING,
    DEMO,
    NOT_ASSESSED,
    OUTSIDE_INTENDED_USE,
)
