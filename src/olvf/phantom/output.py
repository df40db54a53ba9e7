"""A phantom as files: a DICOM DX data set and its truth as JSON."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

import olvf.json_text as json_text
from olvf.atomic import write_bytes_atomic, write_text_atomic
from olvf.errors import InputError
from olvf.phantom.anatomy import DX_FOR_PRESENTATION, MAX_VALUE, PATIENT_ORIENTATION, Phantom

# --------------------------------------------------------------------------- output


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["olvf-phantom", *map(str, parts)]))


def dicom_dataset(phantom: Phantom, *, monochrome1: bool = False) -> Any:
    """The phantom as a pydicom Dataset (DX, For Presentation), uncompressed."""
    import hashlib

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    rows, cols = phantom.size
    photometric = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    stored = (MAX_VALUE - phantom.pixels.astype(np.uint16)) if monochrome1 else phantom.pixels
    digest = hashlib.sha256(np.ascontiguousarray(phantom.pixels).tobytes()).hexdigest()
    study = _uid("study", phantom.seed)
    series = _uid("series", phantom.seed, rows, cols, digest)
    instance = _uid("instance", phantom.seed, digest, photometric)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(DX_FOR_PRESENTATION)
    meta.MediaStorageSOPInstanceUID = UID(instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = instance
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    # Synthetic and says so: no dates, no real-looking identity.
    ds.PatientName = "PHANTOM^OLVF"
    ds.PatientID = "OLVF-PHANTOM"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.AccessionNumber = ""
    ds.StudyID = f"PHANTOM{phantom.seed}"[:16]
    ds.StudyDescription = "olvf phantom lateral lumbar spine"
    ds.SeriesDescription = f"SYNTHETIC PHANTOM (olvf-phantom seed {phantom.seed}), not a patient"[:64]
    ds.Modality = "DX"
    ds.Manufacturer = "olvf-phantom (synthetic)"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PresentationIntentType = "FOR PRESENTATION"
    # What a DX modality writes for the image it acquired: the phantom stands in for one, so that it meets the
    # intended-use gate as a patient's film would (olvf refuses DERIVED and SECONDARY images, its own SC among
    # them). It says it is synthetic in Manufacturer and Series Description, which the gate never trusts.
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.BodyPartExamined = "LSPINE"
    ds.ViewPosition = "LL"
    ds.ImageLaterality = "U"
    ds.PatientOrientation = list(PATIENT_ORIENTATION)
    spacing = f"{phantom.pixel_spacing_mm:.6f}".rstrip("0").rstrip(".")
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LIN"
    # -1: higher values mean less X-ray intensity (bone bright) as stored.
    ds.PixelIntensityRelationshipSign = 1 if monochrome1 else -1
    ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    # Stored values are inverted as MAX - v; the linear window of PS3.3 C.11.2.1.2 then needs
    # centre MAX + 1 - c to show exactly the MONOCHROME2 image.
    center = MAX_VALUE + 1 - phantom.window_center if monochrome1 else phantom.window_center
    ds.WindowCenter, ds.WindowWidth = str(center), str(phantom.window_width)
    ds.DetectorType = ""  # Type 2: there was no detector
    ds.AcquisitionContextSequence = []  # Type 2, required by the DX IOD
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    return ds


def write_dicom(
    phantom: Phantom, path: Path | str, *, monochrome1: bool = False, jpeg2000: bool = False, force: bool = False
) -> None:
    """Write the phantom as a DX For Presentation DICOM file, atomically.

    Explicit VR little endian by default; ``jpeg2000`` compresses losslessly
    (needs pylibjpeg-openjpeg). An existing file is replaced only with ``force``.
    """
    from pydicom.uid import JPEG2000Lossless

    path = Path(path)
    if path.exists() and not force:
        from olvf.errors import OutputExistsError

        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")
    ds = dicom_dataset(phantom, monochrome1=monochrome1)
    if jpeg2000:
        _require_jpeg2000()
        # Lossless: the same image, so the same SOP Instance UID.
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    write_bytes_atomic(path, buffer.getvalue(), force=force)


def _require_jpeg2000() -> None:
    from pydicom.pixels.encoders import JPEG2000LosslessEncoder

    if not JPEG2000LosslessEncoder.is_available:
        raise InputError(
            "JPEG 2000 output needs the pylibjpeg-openjpeg encoder; "
            "install it with: pip install pylibjpeg pylibjpeg-openjpeg (or write uncompressed without --jpeg2000)"
        )


def phantom_display(phantom: Phantom) -> np.ndarray:
    """The phantom as olvf's reader shows its DICOM: float32 (H, W) on the display scale [0, 1].

    The DICOM's Window Center/Width applied as DICOM's LINEAR function
    (PS3.3 C.11.2.1.2, as pydicom's ``apply_windowing``); a MONOCHROME1 file
    of the same phantom reads back the same within 1/width.
    """
    centre, width = phantom.window_center - 0.5, phantom.window_width - 1.0
    values = (phantom.pixels.astype(np.float32) - np.float32(centre)) / np.float32(width) + np.float32(0.5)
    return np.clip(values, 0.0, 1.0)


def truth_dict(phantom: Phantom, **extra: Any) -> dict[str, Any]:
    """The ground truth as JSON-ready data; ``extra`` adds fields such as the DICOM's photometric choice."""
    rows, cols = phantom.size
    return {
        "generator": "olvf-phantom",
        "synthetic": True,
        "seed": phantom.seed,
        "rows": rows,
        "columns": cols,
        "pixel_spacing_mm": phantom.pixel_spacing_mm,
        "anterior": phantom.anterior,
        "box_format": "x1,y1,x2,y2 pixels; x2,y2 exclusive; vertebral body only",
        "window": {"center": phantom.window_center, "width": phantom.window_width},
        **extra,
        "levels": [v.as_dict() for v in phantom.levels],
        "context": [v.as_dict() for v in phantom.context],
    }


def write_truth(phantom: Phantom, path: Path | str, force: bool = False, **extra: Any) -> None:
    """Write the ground truth as JSON, atomically; ``extra`` fields go in at the top level."""
    text = json_text.dumps(truth_dict(phantom, **extra), indent=2) + "\n"
    write_text_atomic(Path(path), text, force=force)
