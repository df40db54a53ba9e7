"""Read a radiograph as hospitals store it: DICOM, or PNG / JPEG / TIFF.

``read_radiograph(path)`` returns a :class:`Radiograph`: one float32 gray image
in [0, 1] where bright means dense (bone), the sense of MONOCHROME2 after every
step, and a :class:`RadiographInfo` saying what was read and every decision
taken on the way. The info never holds patient identifiers (name, ID, birth
date, accession number, institution), so reports built from it can be shared.

DICOM follows the standard's grayscale pipeline (PS3.4 N.2):

1. the stored values of frame 0, decoded by pydicom (a compressed transfer
   syntax whose codec is not installed is refused with what to install);
2. the Modality LUT: Rescale Slope/Intercept or a Modality LUT Sequence
   (``pydicom.pixels.apply_modality_lut``);
3. the VOI transform chosen by :class:`DisplayConversion`: the file's VOI LUT
   Sequence, else its Window Center/Width (``apply_windowing``), else a
   percentile window; a missing or malformed VOI is never an error, but the
   window actually used and why are recorded in ``info.window``;
4. scaling to [0, 1], then inversion of MONOCHROME1 (pydicom never inverts:
   neither ``apply_modality_lut`` nor ``apply_voi_lut`` does, and CR files
   often lack the Presentation LUT Shape that would say so).

Colour DICOMs (RGB, YBR_*; pydicom 3 converts YBR to RGB when decoding) and
colour images become gray by BT.601 luminance, the weights of OpenCV's
``COLOR_BGR2GRAY``. Their values are display values already, so they are only
divided by their maximum.

Decisions:

- Multi-frame: a radiograph is one frame; several frames mean cine, stitching
  or tomosynthesis. Frame 0 is used and ``frames`` / ``frame_used`` say so.
- Files without the 128-byte preamble and ``DICM`` (ACR-NEMA style, or a raw
  dataset written without file meta) are parsed with ``force=True`` only when
  they start like a DICOM dataset (a group 0002 or 0008 element), and kept
  only when they hold pixel data; a note records it. Forcing any file open
  would let pydicom "parse" arbitrary bytes into nonsense elements.
- VOI cascade: a malformed VOI LUT Sequence falls back to the file's Window
  Center/Width, a malformed window to the percentiles; each step's reason is
  kept. A window that maps every pixel to one value counts as malformed.
- VOI LUTs are applied here, not by ``pydicom.pixels.apply_voi``: in pydicom
  3.0 that function indexes an 8-bit LUT with 8-bit indices, so a 4096-entry
  8-bit LUT wraps around. LUT output is scaled by the LUT's own range, not by
  the bits its descriptor declares, because some CR vendors declare the
  storage size instead (Horos and Cornerstone read the data the same way).
- PNG / JPEG / TIFF carry no window: 8-bit files are divided by 255, 16-bit
  ones get the percentile window.

pydicom's warnings about a file (invalid values, excess padding) become
``info.notes`` instead of stderr output; recording them is not thread-safe
(``warnings.catch_warnings``), so read files from one thread at a time.
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_windowing, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from olvf.errors import InputError
from olvf.runtime.config import DisplayConversion

MIN_SIDE = 64  # pixels; a lumbar vertebra spans far more on any real radiograph
BITS_STORED_RANGE = (8, 16)
GRAY = ("MONOCHROME1", "MONOCHROME2")

_BT601 = np.array([0.299, 0.587, 0.114])  # R, G, B
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
)
# A raw dataset begins with its first element's tag: group 0002 (file meta
# without preamble) or 0008 (identifying group), little or big endian.
_RAW_DICOM_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")
_NATIVE_SYNTAXES: dict[tuple[bool | None, bool | None], UID] = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}
_PYDICOM_DIR = str(Path(pydicom.__file__).parent)


@dataclass(frozen=True)
class RadiographInfo:
    """What was read and how; no patient identifiers.

    ``window`` always has the keys ``source`` ("VOI LUT Sequence", "Window
    Center/Width", "percentile fallback" or "full range"), ``centre`` and
    ``width`` (in modality units; None for a LUT), ``function``,
    ``alternatives`` (how many the file offered; the first is used),
    ``explanation``, ``reason`` (why the fallback: "absent", "malformed: ...",
    "requested"), ``percentiles`` and ``lut``. Treat it as read-only.
    ``pixel_spacing_mm`` is (row, column) spacing; from ImagerPixelSpacing it is
    measured at the detector, not in the patient.
    """

    path: str
    kind: str  # "dicom" | "png" | "jpeg" | "tiff"
    sop_instance_uid: str | None
    modality: str | None
    rows: int
    columns: int
    bits_stored: int
    photometric_interpretation: str  # as stored; images get the DICOM term for their pixels
    inverted: bool
    window: dict[str, Any]
    pixel_spacing_mm: tuple[float, float] | None
    spacing_source: str | None  # "PixelSpacing" | "ImagerPixelSpacing" | None
    spacing_reason: str | None  # why there is no spacing: "missing" or "malformed ..."
    frames: int
    frame_used: int
    transfer_syntax: str | None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous
class Radiograph:
    """``pixels``: float32 (H, W) in [0, 1], bright = dense, read-only."""

    pixels: np.ndarray
    info: RadiographInfo


def read_radiograph(
    path: str | os.PathLike[str],
    conversion: DisplayConversion = DisplayConversion(),
    *,
    min_side: int = MIN_SIDE,
) -> Radiograph:
    """Read a DICOM, PNG, JPEG or TIFF radiograph; the content decides the format, not the name.

    ``min_side``: smaller images are refused as too small to hold a vertebra.
    Raises :class:`InputError` (one line naming the file and the fix) for any
    file that cannot be used.
    """
    path = Path(path)
    kind = _sniff(_read_head(path))
    if kind == "dicom":
        return _read_dicom(path, conversion, min_side, preamble=True)
    if kind == "raw-dicom":
        return _read_dicom(path, conversion, min_side, preamble=False)
    if kind is not None:
        return _read_image(path, kind, conversion, min_side)
    raise InputError(f"{path}: neither DICOM nor a PNG, JPEG or TIFF image; export the radiograph from PACS as DICOM")


# --- file level -------------------------------------------------------------


def _read_head(path: Path) -> bytes:
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass the radiograph file itself")
    try:
        with path.open("rb") as stream:
            head = stream.read(132)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the path") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied; make the file readable for this user") from None
    if not head:
        raise InputError(f"{path}: the file is empty (0 bytes); copy it again from PACS or its source")
    return head


def _sniff(head: bytes) -> str | None:
    if head[128:132] == b"DICM":
        return "dicom"
    for magic, kind in _IMAGE_MAGIC:
        if head.startswith(magic):
            return kind
    if head[:2] in _RAW_DICOM_STARTS:
        return "raw-dicom"
    return None


@contextmanager
def _pydicom_warnings(notes: list[str]) -> Iterator[None]:
    """Record pydicom's warnings about the file as notes; re-issue any other warning unchanged.

    They describe the file, so they belong in its report; on stderr they would
    break the CLI's one-line errors, and under pytest's "error" filter they
    would abort a read that pydicom itself completed.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for item in caught:
        if item.filename.startswith(_PYDICOM_DIR):
            note = f"pydicom: {' '.join(str(item.message).split())}"
            if note not in notes:
                notes.append(note)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# --- DICOM ------------------------------------------------------------------


@dataclass(frozen=True)
class _Geometry:
    """The Image Pixel module values the pipeline depends on, validated."""

    rows: int
    columns: int
    samples: int
    bits_allocated: int
    bits_stored: int
    photometric: str
    frames: int


def _read_dicom(path: Path, conversion: DisplayConversion, min_side: int, *, preamble: bool) -> Radiograph:
    notes: list[str] = []
    with _pydicom_warnings(notes):
        ds = _parse_dicom(path, preamble)
        _require_pixel_data(ds, path, preamble)
        ts = _transfer_syntax(ds, path, notes)
        geometry = _geometry(ds, path, min_side)
        _require_complete(ds, ts, geometry, path)
        if geometry.frames > 1:
            notes.append(f"{geometry.frames} frames; used frame 0 (a radiograph is a single frame)")
        stored, decoded_as = _decode_first_frame(ds, ts, path)
        if decoded_as in GRAY:
            pixels, window, inverted = _gray_pipeline(stored, ds, geometry, conversion, path, notes)
        else:
            gray = _to_gray(stored, decoded_as)
            _require_not_blank(gray, path)
            top = float(2**geometry.bits_stored - 1)
            pixels, window, inverted = gray / top, _window_record("full range", centre=top / 2, width=top), False
        spacing, spacing_source, spacing_reason = _spacing(ds, notes)
        sop_instance_uid = _optional_str(ds.get("SOPInstanceUID"))
        modality = _optional_str(ds.get("Modality"))
    if not preamble:
        notes.append("no DICOM preamble ('DICM'); parsed with force=True because it starts like a DICOM dataset")
    info = RadiographInfo(
        path=str(path),
        kind="dicom",
        sop_instance_uid=sop_instance_uid,
        modality=modality,
        rows=geometry.rows,
        columns=geometry.columns,
        bits_stored=geometry.bits_stored,
        photometric_interpretation=geometry.photometric,
        inverted=inverted,
        window=window,
        pixel_spacing_mm=spacing,
        spacing_source=spacing_source,
        spacing_reason=spacing_reason,
        frames=geometry.frames,
        frame_used=0,
        transfer_syntax=ts.name,
        notes=tuple(notes),
    )
    return Radiograph(_finish(pixels), info)


def _gray_pipeline(
    stored: np.ndarray,
    ds: Dataset,
    geometry: _Geometry,
    conversion: DisplayConversion,
    path: Path,
    notes: list[str],
) -> tuple[np.ndarray, dict[str, Any], bool]:
    """Modality LUT, VOI, then MONOCHROME1 inversion; returns pixels in [0, 1], the window, inverted."""
    _require_not_blank(stored, path)
    looked_up = _by_table(stored, ds, geometry, conversion, path, notes)
    if looked_up is not None:
        return looked_up
    return _gray_values(stored, ds, geometry, conversion, path, notes)


# Largest range of stored values worth a table (16-bit images); a table larger than a quarter of the image is not.
_TABLE_MAX = 1 << 16
_PER_VALUE_VOI = ("VOI LUT Sequence", "Window Center/Width")


def _by_table(
    stored: np.ndarray,
    ds: Dataset,
    geometry: _Geometry,
    conversion: DisplayConversion,
    path: Path,
    notes: list[str],
) -> tuple[np.ndarray, dict[str, Any], bool] | None:
    """The same conversion as :func:`_gray_values`, computed once per possible stored value and looked up.

    Rescale, windowing or a VOI LUT and the inversion act on each pixel's value alone, so for integer pixels
    they are a table over the values between the image's minimum and maximum: identical results, one
    gather instead of several float64 passes over millions of pixels (a 2500x2000 film read about 3x faster
    and with 150 MB less memory at its peak). None where the conversion depends on more than the value (the
    percentile window, a Modality LUT Sequence, which need not be monotonic) or a table would not pay; the
    per-pixel path then does the work and raises whatever it raises.
    """
    if stored.dtype.kind not in "iu" or conversion.window == "percentile" or ds.get("ModalityLUTSequence"):
        return None
    low, high = int(stored.min()), int(stored.max())
    span = high - low + 1
    if span > _TABLE_MAX or 4 * span > stored.size:
        return None
    scratch: list[str] = []
    domain = np.arange(low, high + 1, dtype=stored.dtype)
    try:
        table, window, inverted = _gray_values(domain, ds, geometry, conversion, path, scratch)
    except InputError:
        return None
    if window["source"] not in _PER_VALUE_VOI:
        return None  # fell back to percentiles of the values, which are the image's, not the table's
    table = np.clip(table, 0.0, 1.0).astype(np.float32)  # as _finish does to every pixel
    index = stored if low == 0 and stored.dtype.kind == "u" else np.subtract(stored, low, dtype=np.int32)
    pixels = table[index]
    if pixels.min() == pixels.max():
        return None  # the table has contrast the image lacks: the per-pixel path judges it
    notes.extend(scratch)
    return pixels, window, inverted


def _gray_values(
    stored: np.ndarray,
    ds: Dataset,
    geometry: _Geometry,
    conversion: DisplayConversion,
    path: Path,
    notes: list[str],
) -> tuple[np.ndarray, dict[str, Any], bool]:
    values = _modality(stored, ds, path, notes)
    pixels, window = _voi(values, ds, conversion, notes)
    inverted = False
    if geometry.photometric == "MONOCHROME1":
        inverted = conversion.invert_monochrome1
        if inverted:
            pixels = 1.0 - pixels
        else:
            notes.append("MONOCHROME1 left as stored (bright = less dense), as the display conversion says")
    elif str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE":
        notes.append("Presentation LUT Shape INVERSE on MONOCHROME2 ignored; only MONOCHROME1 is inverted")
    return pixels, window, inverted


def _parse_dicom(path: Path, preamble: bool) -> Dataset:
    try:
        return pydicom.dcmread(path, force=not preamble)
    except (InvalidDicomError, ValueError, EOFError, struct.error, OverflowError) as exc:
        raise InputError(
            f"{path}: the DICOM header cannot be parsed ({_one_line(exc)}); "
            "the file is damaged, copy it again from PACS"
        ) from None


def _require_pixel_data(ds: Dataset, path: Path, preamble: bool) -> None:
    if "PixelData" in ds:
        return
    if not preamble:
        raise InputError(
            f"{path}: no DICOM preamble and no pixel data; not an image olvf can read, "
            "export the radiograph from PACS as a DICOM file"
        )
    meta = getattr(ds, "file_meta", None)
    sop = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    if sop:
        name = UID(str(sop)).name
        what = f"{name}, SOP class {sop}" if name != str(sop) else f"SOP class {sop}"
    else:
        what = "no SOP class either, possibly truncated"
    modality = ds.get("Modality")
    if modality:
        what += f", modality {modality}"
    raise InputError(
        f"{path}: holds no pixel data ({what}); olvf needs the radiograph image itself (DX or CR), "
        "not a report, presentation state or other non-image object"
    )


def _transfer_syntax(ds: Dataset, path: Path, notes: list[str]) -> UID:
    meta = getattr(ds, "file_meta", None)
    declared = meta.get("TransferSyntaxUID") if meta is not None else None
    if declared:
        return UID(str(declared))
    # Raw datasets and some old writers name no transfer syntax; pydicom already had
    # to find the encoding to read the header, and native pixel data shares it.
    is_implicit, is_little = ds.original_encoding
    native = _NATIVE_SYNTAXES.get((is_implicit, is_little))
    if ds["PixelData"].is_undefined_length or native is None:
        raise InputError(
            f"{path}: the pixel data is compressed but the file names no Transfer Syntax UID; "
            "export the image again from PACS"
        )
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = native  # pydicom's decoders look it up here
    notes.append(f"no Transfer Syntax UID in the file; used {native.name}, the encoding of its header")
    return native


def _geometry(ds: Dataset, path: Path, min_side: int) -> _Geometry:
    required = {
        "Rows": "(0028,0010)",
        "Columns": "(0028,0011)",
        "BitsAllocated": "(0028,0100)",
        "BitsStored": "(0028,0101)",
        "PhotometricInterpretation": "(0028,0004)",
    }
    absent = [f"{name} {tag}" for name, tag in required.items() if ds.get(name) in (None, "")]
    if absent:
        raise InputError(f"{path}: the image lacks {', '.join(absent)}; the file is incomplete, export it again")
    try:
        geometry = _Geometry(
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            samples=int(ds.get("SamplesPerPixel", 1)),
            bits_allocated=int(ds.BitsAllocated),
            bits_stored=int(ds.BitsStored),
            photometric=str(ds.PhotometricInterpretation).strip().upper(),
            frames=int(ds.get("NumberOfFrames") or 1),
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: invalid image dimensions ({_one_line(exc)}); export the image again") from None
    low, high = BITS_STORED_RANGE
    if not low <= geometry.bits_stored <= high:
        modality = ds.get("Modality") or "unknown modality"
        raise InputError(
            f"{path}: {geometry.bits_stored}-bit pixels ({modality}); olvf reads radiographs stored "
            f"with {low} to {high} bits, pass the DX or CR image"
        )
    if (
        geometry.photometric not in GRAY
        and geometry.photometric != "RGB"
        and not geometry.photometric.startswith("YBR")
    ):
        raise InputError(
            f"{path}: photometric interpretation {geometry.photometric} is not a radiograph's gray or colour "
            "values; export the original image (MONOCHROME1/2)"
        )
    _require_min_side(geometry.rows, geometry.columns, min_side, path)
    if geometry.frames < 1:
        raise InputError(f"{path}: Number of Frames is {geometry.frames}; export the image again")
    return geometry


def _require_complete(ds: Dataset, ts: UID, geometry: _Geometry, path: Path) -> None:
    """Native pixel data shorter than its header declares means the transfer was cut short."""
    if ts.is_compressed:
        return  # a cut codestream is caught by its decoder
    per_pixel = geometry.samples * ((geometry.bits_allocated + 7) // 8)
    expected = geometry.rows * geometry.columns * per_pixel * geometry.frames
    if geometry.photometric == "YBR_FULL_422":
        expected = expected * 2 // 3  # 4:2:2 keeps one Cb and one Cr per two pixels
    actual = len(ds.PixelData)
    if actual < expected:
        raise InputError(
            f"{path}: the pixel data is truncated ({actual} of {expected} bytes); "
            "the file was cut short, copy it again from PACS"
        )


def _decode_first_frame(ds: Dataset, ts: UID, path: Path) -> tuple[np.ndarray, str]:
    """Frame 0 as decoded by pydicom and the photometric interpretation of the result."""
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise InputError(
            f"{path}: pydicom cannot decode transfer syntax {ts.name} ({ts}); "
            "export the image uncompressed (Explicit VR Little Endian)"
        ) from None
    if not decoder.is_available:
        raise InputError(
            f"{path}: {ts.name} pixel data needs a decoder that is not installed "
            f"({'; '.join(decoder.missing_dependencies)}); install one of them or export the image uncompressed"
        )
    try:
        array, properties = decoder.as_array(ds, index=0)
    except RuntimeError as exc:  # every installed plugin failed
        missing = decoder.missing_dependencies
        advice = (
            f"a decoder that is not installed may read it ({'; '.join(missing)})"
            if missing
            else "the file may be damaged, export it again"
        )
        raise InputError(f"{path}: {ts.name} pixel data cannot be decoded ({_one_line(exc)}); {advice}") from None
    except (ValueError, AttributeError) as exc:  # inconsistent Image Pixel module
        raise InputError(f"{path}: the pixel data cannot be read ({_one_line(exc)}); export the image again") from None
    return array, str(properties["photometric_interpretation"]).upper()


def _to_gray(array: np.ndarray, photometric: str) -> np.ndarray:
    values = array.astype(np.float64)
    if photometric == "RGB":
        return values @ _BT601
    return values[..., 0]  # YBR that pydicom left as YBR: Y is the luma already


def _modality(stored: np.ndarray, ds: Dataset, path: Path, notes: list[str]) -> np.ndarray:
    """Stored values to modality values; a malformed Modality LUT makes every later step meaningless."""
    if ds.get("ModalityLUTSequence"):
        problem = _lut_problem(ds.ModalityLUTSequence[0], ds, allowed_bits=(8, 16))
        if problem:
            raise InputError(f"{path}: the Modality LUT Sequence is malformed ({problem}); export the image again")
    elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
        if "RescaleSlope" not in ds or "RescaleIntercept" not in ds:
            notes.append("only one of Rescale Slope / Rescale Intercept present; ignored, as the standard needs both")
        else:
            slope, intercept = _finite(ds.RescaleSlope), _finite(ds.RescaleIntercept)
            if slope is None or intercept is None or slope == 0:
                raise InputError(
                    f"{path}: invalid Rescale Slope/Intercept ({ds.RescaleSlope!s}, {ds.RescaleIntercept!s}); "
                    "export the image again"
                )
    return apply_modality_lut(stored, ds)


class _Malformed(Exception):
    """A VOI source of the file that cannot be used; the message says why."""


def _voi(values: np.ndarray, ds: Dataset, conversion: DisplayConversion, notes: list[str]) -> tuple[np.ndarray, dict]:
    """Modality values to [0, 1] by the file's VOI, else by percentiles, recording which and why."""
    if conversion.window == "percentile":
        return _percentile_window(values, conversion.fallback_percentiles, "requested")
    problems: list[str] = []
    for source, apply in (("VOI LUT Sequence", _voi_lut), ("Window Center/Width", _window)):
        try:
            result = apply(values, ds, notes)
        except _Malformed as exc:
            problems.append(f"{source}: {exc}")
            continue
        if result is None:
            continue  # absent
        pixels, window = result
        if problems:
            notes.append(f"used {source} because {'; '.join(problems)}")
        return pixels, window
    reason = f"malformed: {'; '.join(problems)}" if problems else "absent"
    return _percentile_window(values, conversion.fallback_percentiles, reason)


def _voi_lut(values: np.ndarray, ds: Dataset, notes: list[str]) -> tuple[np.ndarray, dict] | None:
    sequence = ds.get("VOILUTSequence")
    if not sequence:
        return None
    item = sequence[0]
    problem = _lut_problem(item, ds, allowed_bits=(8, *range(10, 17)))
    if problem:
        raise _Malformed(problem)
    entries, first, bits = _descriptor(item)
    if first >= 2**15 and values.min() < 0:
        # The first value mapped is SS for signed input, but some writers store it as
        # US: 63488 means -2048. Read as US, every signed value would map to entry 0.
        first -= 2**16
        notes.append(f"VOI LUT first mapped value read as signed ({first})")
    lut = _lut_data(item, ds, bits)
    index = np.clip(np.rint(values).astype(np.int64) - first, 0, entries - 1)  # LUTs map integers
    low, high = float(lut.min()), float(lut.max())
    pixels = (lut[index].astype(np.float64) - low) / (high - low)
    if high > 2**bits - 1 or high < 2 ** (bits - 1):
        notes.append(
            f"VOI LUT values span {low:g}..{high:g} although its descriptor declares {bits} bits; scaled by the values"
        )
    _require_contrast(pixels, "the LUT maps every pixel to one value")
    explanation = item.get("LUTExplanation")
    window = _window_record(
        "VOI LUT Sequence",
        alternatives=len(sequence),
        explanation=_optional_str(explanation),
        lut={"entries": entries, "first_mapped": first, "bits": bits, "range": [low, high]},
    )
    return pixels, window


def _window(values: np.ndarray, ds: Dataset, notes: list[str]) -> tuple[np.ndarray, dict] | None:
    has_centre, has_width = ds.get("WindowCenter") not in (None, ""), ds.get("WindowWidth") not in (None, "")
    if not has_centre and not has_width:
        return None
    if not has_centre or not has_width:
        raise _Malformed("only one of Window Center / Window Width present")
    centres, widths = _numbers(ds["WindowCenter"].value), _numbers(ds["WindowWidth"].value)
    if centres is None or widths is None:
        raise _Malformed(f"non-numeric values ({ds['WindowCenter'].value!s} / {ds['WindowWidth'].value!s})")
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    try:
        windowed = apply_windowing(values, ds, index=0)
        # The output range depends on bits, sign and rescale (PS3.3 C.11.2.1.2);
        # windowing the extremes asks pydicom for the range it used.
        black, white = apply_windowing(np.array([-np.inf, np.inf]), ds, index=0)
    except ValueError as exc:  # width out of range for the function, unknown function
        raise _Malformed(_one_line(exc)) from None
    if black == white:
        raise _Malformed("its output range is empty")
    pixels = np.clip((windowed - black) / (white - black), 0.0, 1.0)
    centre, width = centres[0], widths[0]
    _require_contrast(pixels, f"centre {centre:g}, width {width:g} maps every pixel to one value")
    explanations = ds.get("WindowCenterWidthExplanation")
    if isinstance(explanations, str) or explanations is None:
        explanation = _optional_str(explanations)
    else:
        explanation = _optional_str(explanations[0]) if len(explanations) else None
    alternatives = max(len(centres), len(widths))
    if alternatives > 1:
        notes.append(f"the file offers {alternatives} windows; used the first (centre {centre:g}, width {width:g})")
    window = _window_record(
        "Window Center/Width",
        centre=centre,
        width=width,
        function=function,
        alternatives=alternatives,
        explanation=explanation,
    )
    return pixels, window


def _percentile_window(values: np.ndarray, percentiles: tuple[float, float], reason: str) -> tuple[np.ndarray, dict]:
    values = values.astype(np.float64, copy=False)
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if high <= low:  # most pixels share one value; stretch the whole range instead
        low, high = float(values.min()), float(values.max())
        reason += "; percentiles coincide, used min/max"
    pixels = np.clip((values - low) / (high - low), 0.0, 1.0)
    window = _window_record(
        "percentile fallback",
        centre=(low + high) / 2,
        width=high - low,
        reason=reason,
        percentiles=[float(p) for p in percentiles],
    )
    return pixels, window


def _window_record(source: str, **details: Any) -> dict[str, Any]:
    """One key set for every source, so reports can rely on it."""
    record: dict[str, Any] = {
        "source": source,
        "centre": None,
        "width": None,
        "function": None,
        "alternatives": 1,
        "explanation": None,
        "reason": None,
        "percentiles": None,
        "lut": None,
    }
    unknown = set(details) - set(record)
    if unknown:
        raise TypeError(f"unknown window details {sorted(unknown)}")
    record.update(details)
    return record


def _require_contrast(pixels: np.ndarray, problem: str) -> None:
    if pixels.min() == pixels.max():
        raise _Malformed(problem)


def _descriptor(item: Dataset) -> tuple[int, int, int]:
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    return entries or 2**16, first, bits  # 0 entries means 65536 (PS3.3 C.11.1.1)


def _lut_problem(item: Dataset, ds: Dataset, allowed_bits: tuple[int, ...]) -> str | None:
    """Why a LUT cannot be used as declared, or None."""
    descriptor, data = item.get("LUTDescriptor"), item.get("LUTData")
    if descriptor is None or data is None:
        return "LUT Descriptor or LUT Data missing"
    try:
        entries, _, bits = _descriptor(item)
    except (TypeError, ValueError):
        return f"LUT Descriptor {descriptor!s} is not three numbers"
    if bits not in allowed_bits:
        return f"{bits} bits per entry"
    lut = _lut_data(item, ds, bits)
    if lut.size != entries:
        return f"descriptor declares {entries} entries, LUT Data has {lut.size}"
    if lut.min() == lut.max():
        return "every entry is the same"
    if allowed_bits == (8, 16) and lut.max() > 2**bits - 1:  # pydicom stores modality LUTs in uint{bits}
        return f"values up to {int(lut.max())} do not fit the declared {bits} bits"
    return None


def _lut_data(item: Dataset, ds: Dataset, bits: int) -> np.ndarray:
    data = item.LUTData
    if isinstance(data, bytes | bytearray):  # OW: 16-bit words in the dataset's byte order
        little = ds.original_encoding[1] is not False
        if bits == 8 and len(data) == int(item.LUTDescriptor[0] or 2**16):
            return np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<u2" if little else ">u2").astype(np.int64)
    if isinstance(data, int):
        return np.array([data], dtype=np.int64)
    return np.asarray(list(data), dtype=np.int64)


def _spacing(ds: Dataset, notes: list[str]) -> tuple[tuple[float, float] | None, str | None, str | None]:
    """PixelSpacing (in the patient, calibrated) before ImagerPixelSpacing (at the detector)."""
    malformed: list[str] = []
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword not in ds:
            continue
        values = _numbers(ds[keyword].value)
        if values is not None and len(values) == 2 and min(values) > 0:
            if malformed:
                notes.append(f"{' and '.join(malformed)} malformed; used {keyword}")
            return (values[0], values[1]), keyword, None
        malformed.append(keyword)
    return None, None, f"malformed {' and '.join(malformed)}" if malformed else "missing"


def _numbers(value: Any) -> list[float] | None:
    """A DICOM DS/IS value (one or many) as finite floats, or None if any is not a number."""
    items = [value] if isinstance(value, str | int | float) else list(value or [])
    numbers = [_finite(v) for v in items]
    if not numbers or any(n is None for n in numbers):
        return None
    return [float(n) for n in numbers if n is not None]


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _optional_str(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


# --- PNG / JPEG / TIFF --------------------------------------------------------


def _read_image(path: Path, kind: str, conversion: DisplayConversion, min_side: int) -> Radiograph:
    # imdecode on the bytes: cv2.imread cannot open non-ASCII paths on Windows.
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(
            f"{path}: looks like a {kind.upper()} image but cannot be decoded (damaged or cut short); export it again"
        )
    colour = image.ndim == 3 and image.shape[2] >= 3
    if image.ndim == 3:
        image = image[:, :, 2::-1] if colour else image[:, :, 0]  # BGR(A) to RGB; gray(+alpha) to gray
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(
            f"{path}: {image.dtype} pixels are not supported; "
            f"save the radiograph as 8- or 16-bit {kind.upper()} or DICOM"
        )
    rows, columns = image.shape[:2]
    _require_min_side(rows, columns, min_side, path)
    gray = image.astype(np.float64) @ _BT601 if colour else image.astype(np.float64)
    _require_not_blank(gray, path)
    bits = image.dtype.itemsize * 8
    if bits == 8:
        pixels, window = gray / 255.0, _window_record("full range", centre=127.5, width=255.0)
    else:
        pixels, window = _percentile_window(gray, conversion.fallback_percentiles, "absent")
    info = RadiographInfo(
        path=str(path),
        kind=kind,
        sop_instance_uid=None,
        modality=None,
        rows=rows,
        columns=columns,
        bits_stored=bits,
        photometric_interpretation="RGB" if colour else "MONOCHROME2",
        inverted=False,
        window=window,
        pixel_spacing_mm=None,
        spacing_source=None,
        spacing_reason="missing",
        frames=1,
        frame_used=0,
        transfer_syntax=None,
    )
    return Radiograph(_finish(pixels), info)


# --- shared checks ------------------------------------------------------------


def _require_min_side(rows: int, columns: int, min_side: int, path: Path) -> None:
    if min(rows, columns) < min_side:
        raise InputError(
            f"{path}: {columns}x{rows} pixels is too small to hold a vertebra (need at least {min_side} on each side); "
            "pass the full radiograph, not a thumbnail"
        )


def _require_not_blank(values: np.ndarray, path: Path) -> None:
    low, high = values.min(), values.max()
    if low == high:
        raise InputError(f"{path}: blank image (every pixel is {low:g}); check that the right image was exported")


def _finish(pixels: np.ndarray) -> np.ndarray:
    # Read-only: a Radiograph is frozen, and callers share one array.
    out = np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)
    out.setflags(write=False)
    return out


def gray_image(image: np.ndarray) -> np.ndarray:
    """A caller's image as the stages take it: 2-D float32 on the display scale, finite."""
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 1:
        raise InputError(f"images must be 2-D grayscale arrays (H, W) on the display scale [0, 1], got {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"images must be float gray values in [0, 1] (the display scale), got {image.dtype}")
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise InputError("the image has NaN or infinite pixels")
    return image
