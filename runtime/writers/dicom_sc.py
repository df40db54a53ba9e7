"""The overlay as a DICOM Secondary Capture, filed in the source's patient and study as a new series.

What a PACS viewer shows is what olvf drew: the overlay's RGB pixels
(MONOCHROME2 with an identity window when every pixel is gray), 8 bits,
uncompressed. The picture is never larger than the source image: the
overlay module enlarges small films for legible labels, and a Secondary
Capture three times the size of its radiograph is no help in a PACS, so such
an overlay is shrunk back (area interpolation) to fit the source's rows and
columns.

The object says how it came to be: Image Type DERIVED\\SECONDARY, Burned In
Annotation YES (the labels are pixels, so the image must not be sent on as
anonymous), Conversion Type WSD, a Source Image Sequence pointing at the
radiograph (purpose "Source image for image processing operation"), a
Derivation Description, and the bundle and operating point (and DEMO) in the
Series Description. There is no Frame of Reference: the SC IOD has no such
module, and the picture (a header band above a resampled film) does not share
the source's pixel geometry; the SR's boxes refer to the source image.
"""

from __future__ import annotations

import datetime
from copy import deepcopy

import cv2
import numpy as np
from highdicom.sc import SCImage
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from olvf.runtime.writers import dicom_codes as codes
from olvf.runtime.writers.dicom_source import DicomSource, copy_identity
from olvf.runtime.writers.dicom_uids import SC_INSTANCE, SC_SERIES, derived_uid
from olvf.runtime.writers.findings import StudyFindings

SC_SERIES_NUMBER = 9001  # far above a modality's own series numbers, next to the SR's 9002
MANUFACTURER = "olvf"
DEMO_PREFIX = "DEMO - "
DEMO_TEXT = "DEMO bundle: trained on synthetic phantoms only, not for diagnosis"
MAX_LO = 64  # characters in a Long String such as Series Description


def series_description(kind: str, findings: StudyFindings) -> str:
    """``DEMO - olvf overlay, bundle 1a2b3c4d, p(fresh) >= 0.50``: DEMO first, where no truncation hides it."""
    prefix = DEMO_PREFIX if findings.demo else ""
    if findings.mri_recommended is None:
        prefix += "NOT ASSESSED - "
    elif findings.outside_intended_use:
        prefix += "OUTSIDE USE - "
    text = f"{prefix}olvf {kind}, bundle {findings.algorithm.bundle_sha256[:8]}"
    point = f", p(fresh) >= {findings.operating_point:.2f}"
    if len(text + point) <= MAX_LO:  # the threshold goes where it fits: the prefixes must never be cut
        text += point
    if len(text) > MAX_LO:
        raise ValueError(f"series description longer than {MAX_LO} characters: {text!r}")
    return text


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


def build_secondary_capture(source: DicomSource, overlay_rgb: np.ndarray, findings: StudyFindings) -> SCImage:
    """The Secondary Capture of ``overlay_rgb`` (H, W, 3) RGB uint8, as drawn, for ``source``.

    ``overlay.render_overlay`` returns BGR (OpenCV's order): pass
    ``overlay[..., ::-1]``. UIDs derive from the source SOP Instance UID and
    the bundle (:mod:`dicom_uids`), so the same input and bundle give the same
    object identity.
    """
    picture, photometric = _pixels(overlay_rgb)
    picture = fit_to_source(picture, source.size)
    sha = findings.algorithm.bundle_sha256
    now = datetime.datetime.now()
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
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=series_description("overlay", findings),
        manufacturer_model_name=findings.algorithm.name,
        software_versions=findings.algorithm.version,
        series_date=now.date(),
        series_time=now.time(),
    )
    copy_identity(source.header, sc)
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
    sc.LossyImageCompression = "00"
    sc.SourceImageSequence = [_source_reference(source)]
    resampled = picture.shape[:2] != source.size
    sc.DerivationDescription = (
        "olvf overlay of the source radiograph"
        + (" (resampled)" if resampled else "")
        + ": vertebral body boxes, levels, classes, probabilities, Grad-CAM and the MRI line burned in; "
        + f"bundle manifest sha256 {sha}"
    )
    if resampled:
        sc.DerivationCodeSequence = [CodedConcept.from_code(codes.SPATIAL_RESAMPLING)]
    if photometric == "MONOCHROME2":
        sc.WindowCenter, sc.WindowWidth = 128, 256  # PS3.3 C.11.2.1.2: maps 0..255 onto the full range, as drawn
    comments = []
    if findings.mri_recommended is None:
        comments.append(f"NOT ASSESSED, no findings: {findings.mri_reason}")
    elif findings.outside_intended_use:
        comments.append(f"OUTSIDE INTENDED USE (research override): {findings.outside_intended_use}")
    if findings.demo:
        comments.append(DEMO_TEXT)
    if comments:
        sc.ImageComments = "; ".join(comments)[:10240]  # LT holds 10240 characters
    return sc
