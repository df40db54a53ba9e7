"""The overlay as a DICOM Secondary Capture, filed in the source's patient and study as a new series.

What a PACS viewer shows is what olvf drew: the overlay's RGB pixels
(MONOCHROME2 with an identity window when every pixel is gray), 8 bits,
compressed losslessly as RLE Lossless (1.2.840.10008.1.2.5), the lossless
syntax every major PACS and viewer reads. The picture is never larger than
the source image: the overlay module enlarges small films for legible
labels, and a Secondary Capture three times the size of its radiograph is no
help in a PACS, so such an overlay is shrunk back (area interpolation) to fit
the source's rows and columns.

The object says how it came to be and what olvf decided: Image Type
DERIVED\\SECONDARY, Burned In Annotation YES (the labels are pixels, so the
image must not be sent on as anonymous), Conversion Type WSD, a Source Image
Sequence pointing at the radiograph (purpose "Source image for image
processing operation"), a Derivation Description with the bundle, the
verdict in the Series Description (:func:`series_description`: DEMO first,
then the suspected fresh levels in the decision's words) and in the Image
Comments, and olvf in the Contributing Equipment Sequence as IHE AIR asks of
the SR (:func:`contributing_equipment`). Series, Content and Instance
Creation Date/Time are the moment it was made. There is no Frame of
Reference: the SC IOD has no such module, and the picture (a header band
above a resampled film) does not share the source's pixel geometry; the SR's
boxes refer to the source image.
"""

from __future__ import annotations

import datetime
from copy import deepcopy

import cv2
import numpy as np
from highdicom import ContributingEquipment
from highdicom.sc import SCImage
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless

from olvf.runtime.writers import dicom_codes as codes
from olvf.runtime.writers.dicom_source import DicomSource, copy_identity
from olvf.runtime.writers.dicom_uids import SC_INSTANCE, SC_SERIES, bundle_uid, derived_uid
from olvf.runtime.writers.findings import StudyFindings

SC_SERIES_NUMBER = 9001  # far above a modality's own series numbers, next to the SR's 9002
MANUFACTURER = "olvf"
DEMO_PREFIX = "DEMO - "
DEMO_TEXT = "DEMO bundle: trained on synthetic phantoms only, not for diagnosis"
MAX_LO = 64  # characters in a Long String such as Series Description
DEVICE_ROLE = "device-observer"  # the bundle-derived UID of olvf as a device: TID 1004 and Contributing Equipment


def _results(findings: StudyFindings) -> list[str]:
    """The verdict in words, longest first; each names the decision's levels (the last only counts them)."""
    if findings.mri_recommended is None:
        return ["olvf: no verdict - the film needs a reader", "olvf: no verdict"]
    if not findings.vertebrae:
        return ["olvf: no vertebral body found - the film needs a reader", "olvf: no vertebral body found"]
    levels = findings.mri_levels
    if not levels:
        return ["olvf: no suspected fresh fracture - MRI not indicated", "olvf: no suspected fresh fracture"]
    return [
        f"olvf: suspected fresh fracture {', '.join(levels)} - MRI recommended",
        f"olvf: suspected fresh {','.join(levels)} - MRI recommended",
        f"olvf: MRI recommended ({len(levels)} suspected fresh)",
    ]


def series_description(kind: str, findings: StudyFindings) -> str:
    """``DEMO - olvf: suspected fresh fracture L3, L4 - MRI recommended``: the result, DEMO first.

    ``kind`` names the object (``"overlay"``, ``"findings SR"``) for the caller's sake; both objects carry the
    same words, so a PACS series list shows the verdict whichever series it lists first. NOT ASSESSED and
    OUTSIDE USE follow DEMO; the result is worded as long as a Long String (64 characters) holds, so the
    prefixes are never cut.
    """
    if kind not in ("overlay", "findings SR"):
        raise ValueError(f"kind must be 'overlay' or 'findings SR', got {kind!r}")
    prefix = DEMO_PREFIX if findings.demo else ""
    if findings.mri_recommended is None:
        prefix += "NOT ASSESSED - "
    elif findings.outside_intended_use:
        prefix += "OUTSIDE USE - "
    for text in _results(findings):
        if len(prefix + text) <= MAX_LO:
            return prefix + text
    raise ValueError(f"no series description fits {MAX_LO} characters: {prefix + text!r}")  # pragma: no cover


def verdict_comments(findings: StudyFindings) -> str:
    """What olvf decided, in the decision's words: DEMO first, then the headline and the detailed line."""
    comments = [DEMO_TEXT] if findings.demo else []
    if findings.outside_intended_use and findings.mri_recommended is not None:
        comments.append(f"OUTSIDE INTENDED USE (research override): {findings.outside_intended_use}")
    decision = findings.decision
    comments += [decision.headline, decision.line]
    return "; ".join(comments)


def contributing_equipment(findings: StudyFindings, when: datetime.datetime) -> ContributingEquipment:
    """olvf as the processing equipment that made the object (IHE AIR: Contributing Equipment Sequence).

    Manufacturer's Model Name and Software Versions are the SR's TID 4019 Algorithm Name and Version, and
    the Device UID is its TID 1004 Device Observer UID, as AIR requires them to match.
    """
    algorithm = findings.algorithm
    item = ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.PROCESSING_EQUIPMENT,
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        contribution_datetime=when,
        contribution_description=(
            f"{algorithm.name} {algorithm.version}, bundle manifest sha256 {algorithm.bundle_sha256}, "
            f"{algorithm.backend}" + (f"; {DEMO_TEXT}" if findings.demo else "")
        ),
    )
    item.DeviceUID = bundle_uid(algorithm.bundle_sha256, DEVICE_ROLE)
    return item


def stamp(dataset: Dataset, findings: StudyFindings, when: datetime.datetime) -> None:
    """Instance Creation Date/Time at ``when`` (as Series and Content) and olvf alone as Contributing Equipment.

    highdicom adds itself as contributing equipment; it is a library inside olvf, not equipment of its own,
    and a second Processing Equipment item would leave an AIR reader to guess which one is the algorithm.
    """
    dataset.InstanceCreationDate = when.strftime("%Y%m%d")
    dataset.InstanceCreationTime = when.strftime("%H%M%S.%f")
    dataset.ContributingEquipmentSequence = [contributing_equipment(findings, when)]


def fit_to_source(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Shrink ``picture`` (keeping its aspect) until it fits ``size`` (rows, columns); never enlarge it."""
    rows, columns = size
    height, width = picture.shape[:2]
    scale = min(1.0, rows / height, columns / width)
    if scale >= 1.0:
        return picture
    target = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(picture, target, interpolation=cv2.INTER_AREA)


def _pixels(overlay_rgb: np.ndarray) -> tuple[np.ndarray, str]:
    picture = np.asarray(overlay_rgb)
    if picture.dtype != np.uint8:
        raise ValueError(f"the overlay must be uint8, got {picture.dtype}")
    if picture.ndim == 2:
        return picture, "MONOCHROME2"
    if picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"the overlay must be (H, W, 3) RGB or (H, W) gray, got shape {picture.shape}")
    if np.array_equal(picture[..., 0], picture[..., 1]) and np.array_equal(picture[..., 0], picture[..., 2]):
        return np.ascontiguousarray(picture[..., 0]), "MONOCHROME2"  # all gray: one channel shows the same
    return np.ascontiguousarray(picture), "RGB"


def _source_reference(source: DicomSource) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.sop_class_uid
    item.ReferencedSOPInstanceUID = source.sop_instance_uid
    if source.multi_frame:
        item.ReferencedFrameNumber = 1  # the pipeline reads frame 1 of a multi-frame image
    item.PurposeOfReferenceCodeSequence = [CodedConcept.from_code(codes.SOURCE_FOR_PROCESSING)]
    return item


def build_secondary_capture(
    source: DicomSource, overlay_rgb: np.ndarray, findings: StudyFindings, when: datetime.datetime | None = None
) -> SCImage:
    """The Secondary Capture of ``overlay_rgb`` (H, W, 3) RGB uint8, as drawn, for ``source``.

    ``overlay.render_overlay`` returns BGR (OpenCV's order): pass
    ``overlay[..., ::-1]``. UIDs derive from the source SOP Instance UID and
    the bundle (:mod:`dicom_uids`), so the same input and bundle give the same
    object identity. ``when``: the moment the results were made (now by
    default), its Series, Content and Instance Creation Date/Time.
    """
    picture, photometric = _pixels(overlay_rgb)
    picture = fit_to_source(picture, source.size)
    sha = findings.algorithm.bundle_sha256
    when = when or datetime.datetime.now()
    sc = SCImage(
        pixel_array=picture,
        photometric_interpretation=photometric,
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=source.study_instance_uid,
        series_instance_uid=derived_uid(source.sop_instance_uid, sha, SC_SERIES),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=derived_uid(source.sop_instance_uid, sha, SC_INSTANCE),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("P", "F"),  # replaced below by the source's own value
        transfer_syntax_uid=RLELossless,
        series_description=series_description("overlay", findings),
        manufacturer_model_name=findings.algorithm.name,
        software_versions=findings.algorithm.version,
        series_date=when.date(),
        series_time=when.time(),
        content_date=when.date(),
        content_time=when.time(),
    )
    copy_identity(source.header, sc)
    stamp(sc, findings, when)
    # Rows and columns keep their directions through the overlay (a header band is added above),
    # so the source's orientation labels still hold; type 2C, empty when the source has none.
    if source.header.get("PatientOrientation"):
        sc["PatientOrientation"] = deepcopy(source.header["PatientOrientation"])
    else:
        sc.PatientOrientation = []
    for keyword in ("BodyPartExamined", "Laterality"):  # series level: the SC shows the same part
        if keyword in source.header:
            sc[keyword] = deepcopy(source.header[keyword])
    sc.ConversionType = "WSD"  # made by a workstation from a DICOM image, not digitised from film
    sc.BurnedInAnnotation = "YES"
    sc.LossyImageCompression = "00"  # RLE is lossless: the pixels are the overlay's
    sc.SourceImageSequence = [_source_reference(source)]
    resampled = picture.shape[:2] != source.size
    sc.DerivationDescription = (
        "olvf overlay of the source radiograph"
        + (" (resampled)" if resampled else "")
        + ": vertebral body boxes with each level's state and p(fresh), Grad-CAM in the findings' boxes and "
        + f"the verdict burned in; bundle manifest sha256 {sha}"
    )
    if resampled:
        sc.DerivationCodeSequence = [CodedConcept.from_code(codes.SPATIAL_RESAMPLING)]
    if photometric == "MONOCHROME2":
        sc.WindowCenter, sc.WindowWidth = 128, 256  # PS3.3 C.11.2.1.2: maps 0..255 onto the full range, as drawn
    sc.ImageComments = verdict_comments(findings)[:10240]  # LT holds 10240 characters
    return sc
