"""Every coded concept olvf writes, and where each comes from.

Standard codes are taken from pydicom's bundled code dictionary
(``pydicom.sr.codedict``, generated from DICOM PS3.16), never typed by hand,
so a code that DICOM does not list cannot slip in. The vertebra levels are
SNOMED CT codes of CID 7603 ("Spine Anatomic Sites" context group members, as
the dictionary records): T12 23215003, L1 66794005, L2 14293000, L3 36470004,
L4 11994002, L5 49668003.

DICOM has no codes for olvf's classes ("fresh" and "old" osteoporotic
fracture), for its probabilities or for its Grad-CAM regions. They come from
a private coding scheme, designator ``99OLVF`` (PS3.16 section 8: designators
beginning with "99" are for private schemes), declared in each SR's Coding
Scheme Identification Sequence and listed in docs/reference/dicom-objects.md.
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

SCHEME = "99OLVF"
SCHEME_VERSION = "1"


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
LUMBAR_SPINE = codes.SCT.LumbarSpine
VERTEBRA = codes.SCT.Vertebra
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure
IMAGING_PROCEDURE = codes.SCT.ImagingProcedure  # CID 100 has no lateral lumbar radiograph
YES = codes.SCT.Yes
NO = codes.SCT.No
NO_UNITS = codes.UCUM.NoUnits  # UCUM "1": probabilities and scores are pure numbers
DEVICE = codes.DCM.Device
SOURCE_FOR_PROCESSING = codes.DCM.SourceImageForImageProcessingOperation  # CID 7202
SPATIAL_RESAMPLING = codes.DCM.SpatialResampling  # CID 7203

# --- the private scheme ---------------------------------------------------------------------------
CLASS_NAME = _private("CLASS", "Osteoporotic vertebral fracture class")
CLASS_VALUES: dict[str, Code] = {
    "normal": _private("NORMAL", "No osteoporotic vertebral fracture"),
    "old": _private("OLD", "Old (healed) osteoporotic vertebral fracture"),
    "fresh": _private("FRESH", "Fresh osteoporotic vertebral fracture"),
}
PROBABILITY_NAMES: dict[str, Code] = {
    "normal": _private("P-NORMAL", "Probability of no osteoporotic vertebral fracture"),
    "old": _private("P-OLD", "Probability of old osteoporotic vertebral fracture"),
    "fresh": _private("P-FRESH", "Probability of fresh osteoporotic vertebral fracture"),
}
DETECTOR_SCORE = _private("DETECTOR-SCORE", "Vertebral body detector confidence")
GRADCAM_PEAK = _private("GRADCAM-PEAK", "Region of the Grad-CAM maximum")
REGION_VALUES: dict[str, Code] = {
    "centre": _private("CENTRE", "Centre of the vertebral body"),
    "upper_endplate": _private("UPPER-ENDPLATE", "Upper endplate band of the vertebral body"),
    "lower_endplate": _private("LOWER-ENDPLATE", "Lower endplate band of the vertebral body"),
    "anterior": _private("ANTERIOR", "Anterior wall band of the vertebral body"),
    "posterior": _private("POSTERIOR", "Posterior wall band of the vertebral body"),
    "outside_box": _private("OUTSIDE-BOX", "Outside the vertebral body box"),
}
MRI_RECOMMENDED = _private("MRI-RECOMMENDED", "MRI recommended to tell fresh from old fracture")
MRI_REASON = _private("MRI-REASON", "Reason for the MRI recommendation")
OPERATING_POINT = _private("FRESH-OP-POINT", "Fresh fracture probability operating point")
DEMO_WARNING = _private("DEMO-WARNING", "Demonstration model warning")
#: the value of MRI-RECOMMENDED for a study olvf did not assess (never NO: "not assessed" is no negative finding)
NOT_ASSESSED = _private("NOT-ASSESSED", "Not assessed: outside the intended use of the algorithm")
OUTSIDE_INTENDED_USE = _private("OUTSIDE-INTENDED-USE", "Result given outside the intended use (research override)")

PRIVATE_CODES: tuple[Code, ...] = (
    CLASS_NAME,
    *CLASS_VALUES.values(),
    *PROBABILITY_NAMES.values(),
    DETECTOR_SCORE,
    GRADCAM_PEAK,
    *REGION_VALUES.values(),
    MRI_RECOMMENDED,
    MRI_REASON,
    OPERATING_POINT,
    DEMO_WARNING,
    NOT_ASSESSED,
    OUTSIDE_INTENDED_USE,
)
