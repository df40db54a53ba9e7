"""Read a radiograph as hospitals store it: DICOM, or PNG / JPEG / TIFF.

``read_radiograph(path)`` returns a :class:`Radiograph`: one float32 gray image
in [0, 1] where bright means dense (bone), the sense of MONOCHROME2 after every
step, and a :class:`RadiographInfo` saying what was read and every decision
taken on the way. The info never holds patient identifiers (name, ID, birth
date, accession number, institution), so reports built from it can be shared.

DICOM follows the standard's grayscale pipeline (PS3.4 N.2):

1. the stored values of frame 0, decoded by pydicom with the codecs of the
   base install (:mod:`olvf.runtime.dicom_codecs`: JPEG Lossless, JPEG
   Extended 12-bit, JPEG-LS, JPEG 2000, RLE, deflate);
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

What a file may cost (:class:`ReadLimits`, checked before anything is
decoded, from the file size, the DICOM header, the JPEG / JPEG-LS / JPEG 2000
codestream header and the PNG / JPEG / TIFF header, :mod:`olvf.runtime.image_headers`):

- at most ``max_pixels`` (40 million) pixels per frame, e.g. 6000 x 6600;
- at most ``max_bytes`` (256 MiB) on disk, and for a deflated data set once inflated
  (inflated in a stream and counted, never held whole, before pydicom reads it).

Any file, however malformed, costs only itself: every failure while reading
it is an :class:`InputError` naming the file and, where there is one, the
element at fault (pydicom converts elements lazily, so a wrong VR surfaces
only when a value is used; the reader reads each value it needs through one
guarded accessor). Refused with their reason, never analysed:

- a codestream whose size or samples contradict the DICOM header (Rows and
  Columns swapped, SamplesPerPixel 3 on gray data), native pixel data far
  longer or shorter than the header declares, Samples per Pixel that do not
  fit the photometric interpretation, Bits Stored over Bits Allocated;
- pixels that are not finite after the Modality LUT (a Rescale Intercept of
  1e308), or one value everywhere (blank), before or after the display
  conversion;
- olvf's own results (its Secondary Capture and SR, Manufacturer "olvf"): a
  PACS returns them with the study, and they are not radiographs.

A JPEG 2000 codestream whose sign differs from Pixel Representation is
decoded as the codestream says (pydicom's correction) and a note says so.

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
- Spacing: a zero spacing (``0\\0``, what some modalities write for "unknown")
  is treated as absent, not as malformed.
- Patient Orientation (0020,0020), when present, is kept
  (``info.patient_orientation``): its row direction says which side of the
  image the patient faces (:func:`olvf.runtime.cam_regions.geometry_from_orientation`).
- PNG / JPEG / TIFF carry no window: 8-bit files are divided by 255, 16-bit
  ones get the percentile window.

Every text taken from a header (modality, UIDs, explanations, pydicom's
warnings that quote values) passes through :func:`olvf.text.printable`, so
no escape sequence in a file reaches a terminal or a report.

pydicom's warnings about a file (invalid values, excess padding) become
``info.notes`` instead of stderr output; recording them is not thread-safe
(``warnings.catch_warnings``), so read files from one thread at a time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import stat
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
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_windowing, get_decoder
from pydicom.uid import (
    UID,
)

from olvf.errors import InputError
from olvf.runtime import dicom_codecs
from olvf.runtime.config import DisplayConversion
from olvf.runtime.dicom_header import (
    DEFAULT_LIMITS,
    GRAY,
    DicomHeader,
    Geometry,
    ReadLimits,
    check_codestream,
    check_deflated,
    failure,
    image_geometry,
    one_line,
    optional_str,
    refuse_own_results,
    require_complete,
    require_min_side,
    require_pixel_data,
    transfer_syntax,
)
from olvf.runtime.image_headers import ImageHeader, jpeg_header, png_header, tiff_header
from olvf.text import printable

MIN_SIDE = 64  # pixels; a lumbar vertebra spans far more on any real radiograph

_BT601 = np.array([0.299, 0.587, 0.114])  # R, G, B
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
)
# A raw dataset begins with its first element's tag: group 0002 (file meta
# without preamble) or 0008 (identifying group), little or big endian.
_RAW_DICOM_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")
_PYDICOM_DIR = str(Path(pydicom.__file__).parent)
_CHUNK = 1 << 20
# Pixel-wise steps run on row blocks of about this many pixels, so that their float64 temporaries
# stay a few MB whatever the image: a 40-megapixel film is read in about 11 bytes per pixel, not 34.
_BLOCK_PIXELS = 1 << 20
_NOT_REGULAR = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)

dicom_codecs.register()


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
    measured at the detector, not in the patient. ``sha256``: of the file's
    bytes, so that results can say which content they came from.
    ``patient_orientation``: Patient Orientation (0020,0020), row and column
    direction (e.g. ``("P", "F")``), when the file has it.
    ``sop_class_uid``, ``body_part_examined``, ``view_position`` and
    ``image_type`` are the header's own words on what the image is, for the
    intended-use check (:mod:`olvf.runtime.applicability`); None where the
    file does not say (every non-DICOM image).
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
    sha256: str | None = None
    patient_orientation: tuple[str, str] | None = None
    sop_class_uid: str | None = None
    body_part_examined: str | None = None
    view_position: str | None = None
    image_type: tuple[str, ...] | None = None

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
    limits: ReadLimits = DEFAULT_LIMITS,
) -> Radiograph:
    """Read a DICOM, PNG, JPEG or TIFF radiograph; the content decides the format, not the name.

    ``min_side``: smaller images are refused as too small to hold a vertebra.
    ``limits``: larger ones are refused before they are decoded.
    Raises :class:`InputError` (one line naming the file and the fix) for any
    file that cannot be used, whatever is wrong with it.
    """
    path = Path(path)
    head, size = _open_checked(path, limits)
    kind = _sniff(head)
    if kind is None:
        raise InputError(
            f"{printable(path)}: neither DICOM nor a PNG, JPEG or TIFF image; export the radiograph from PACS as DICOM"
        )
    digest = _sha256(path)
    try:
        if kind in ("dicom", "raw-dicom"):
            radiograph = _read_dicom(path, conversion, min_side, limits, preamble=kind == "dicom")
        else:
            radiograph = _read_image(path, kind, conversion, min_side, limits)
    except MemoryError:
        raise InputError(
            f"{printable(path)}: not enough memory to read this {size / 2**20:.0f} MiB file here; "
            "free memory or read it on a larger machine"
        ) from None
    return Radiograph(radiograph.pixels, dataclasses.replace(radiograph.info, sha256=digest))


# --- file level -------------------------------------------------------------


def _open_checked(path: Path, limits: ReadLimits) -> tuple[bytes, int]:
    """The first 132 bytes and the size of a regular, readable, non-empty file within the byte limit.

    The file is opened non-blocking and checked to be regular first: opening a
    FIFO for reading blocks until a writer comes, which may be never.
    """
    shown = printable(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{shown}: no such file; check the path") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot be read ({exc.strerror or exc}); check the path") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{shown}: is a folder; pass the radiograph file itself")
    for test, what in _NOT_REGULAR:
        if test(info.st_mode):
            raise InputError(f"{shown}: is {what}, not a file; olvf reads regular files only")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except PermissionError:
        raise InputError(f"{shown}: permission denied; make the file readable for this user") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot be opened ({exc.strerror or exc}); check the path") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):  # replaced between stat and open
            raise InputError(f"{shown}: is not a regular file; olvf reads regular files only")
        head = os.read(fd, 132)
    finally:
        os.close(fd)
    size = opened.st_size
    if not head:
        raise InputError(f"{shown}: the file is empty (0 bytes); copy it again from PACS or its source")
    if size > limits.max_bytes:
        raise InputError(
            f"{shown}: {size / 2**20:.0f} MiB is over olvf's limit of {limits.max_bytes / 2**20:.0f} MiB per "
            "input; a radiograph is far smaller, export the single image"
        )
    return head, size


def _read_head(path: Path) -> bytes:
    """The first 132 bytes of a file that may be read (see :func:`_open_checked`)."""
    return _open_checked(path, DEFAULT_LIMITS)[0]


def _row_blocks(shape: tuple[int, ...]) -> Iterator[slice]:
    per_row = max(1, int(np.prod(shape[1:])))
    step = max(1, _BLOCK_PIXELS // per_row)
    for start in range(0, shape[0], step):
        yield slice(start, start + step)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
            if note not in notes and len(notes) < 50:
                notes.append(note)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


# --- DICOM ------------------------------------------------------------------


def _read_dicom(path: Path, conversion: DisplayConversion, min_side: int, limits: ReadLimits, *, preamble: bool):
    notes: list[str] = []
    try:
        with _pydicom_warnings(notes):
            ds = _parse_dicom(path, preamble, limits)
            radiograph = _dicom_radiograph(ds, path, conversion, min_side, limits, preamble, notes)
        # pydicom's warnings join the notes when the block ends
        info = dataclasses.replace(radiograph.info, notes=tuple(printable(note) for note in notes))
        return Radiograph(radiograph.pixels, info)
    except (InputError, MemoryError):
        raise
    except RecursionError:
        raise InputError(
            f"{printable(path)}: the DICOM data set nests sequences too deeply to read; "
            "it is not a radiograph as a modality writes it, export the image again"
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever pydicom raises on a malformed file is the file's fault
        raise InputError(
            f"{printable(path)}: the DICOM data set is malformed ({failure(exc)}); export the image again"
        ) from None


def _dicom_radiograph(
    ds: Dataset,
    path: Path,
    conversion: DisplayConversion,
    min_side: int,
    limits: ReadLimits,
    preamble: bool,
    notes: list[str],
) -> Radiograph:
    header = DicomHeader(ds, path)
    refuse_own_results(header)
    require_pixel_data(header, preamble)
    ts = transfer_syntax(header, notes)
    geometry = image_geometry(header, min_side, limits)
    require_complete(header, ts, geometry)
    if ts.is_compressed:
        check_codestream(header, ts, geometry, notes)
    if geometry.frames > 1:
        notes.append(f"{geometry.frames} frames; used frame 0 (a radiograph is a single frame)")
    stored, decoded_as = _decode_first_frame(header, ts, geometry, notes)
    del ds.PixelData  # decoded: the encoded bytes (as large as the image) are not needed any more
    if decoded_as in GRAY:
        pixels, window, inverted = _gray_pipeline(stored, header, geometry, conversion, notes)
    else:
        gray = _to_gray(stored, decoded_as)
        _require_not_blank(gray, path)
        top = float(2**geometry.bits_stored - 1)
        pixels, window, inverted = gray / top, _window_record("full range", centre=top / 2, width=top), False
    spacing, spacing_source, spacing_reason = _spacing(header, notes)
    if not preamble:
        notes.append("no DICOM preamble ('DICM'); parsed with force=True because it starts like a DICOM dataset")
    info = RadiographInfo(
        path=str(path),
        kind="dicom",
        sop_instance_uid=header.text("SOPInstanceUID"),
        modality=header.text("Modality"),
        rows=geometry.rows,
        columns=geometry.columns,
        bits_stored=geometry.bits_stored,
        photometric_interpretation=geometry.photometric,
        inverted=inverted,
        window=_printable_window(window),
        pixel_spacing_mm=spacing,
        spacing_source=spacing_source,
        spacing_reason=spacing_reason,
        frames=geometry.frames,
        frame_used=0,
        transfer_syntax=printable(ts.name),
        notes=tuple(printable(note) for note in notes),
        patient_orientation=_orientation(header, notes),
        sop_class_uid=header.text("SOPClassUID"),
        body_part_examined=header.text("BodyPartExamined"),
        view_position=header.text("ViewPosition"),
        image_type=_image_type(header),
    )
    return Radiograph(_finish(pixels, path), info)


def _image_type(header: DicomHeader) -> tuple[str, ...] | None:
    """Image Type (0008,0008) as its values (ORIGINAL\\PRIMARY\\...), upper case; None where absent or empty."""
    value = header.get("ImageType")
    if value is None or value == "":
        return None
    values = [value] if isinstance(value, str) else list(value)
    words = tuple(printable(str(v).strip().upper()) for v in values)
    return words if any(words) else None


def _gray_pipeline(
    stored: np.ndarray,
    header: DicomHeader,
    geometry: Geometry,
    conversion: DisplayConversion,
    notes: list[str],
) -> tuple[np.ndarray, dict[str, Any], bool]:
    """Modality LUT, VOI, then MONOCHROME1 inversion; returns pixels in [0, 1], the window, inverted."""
    path = header.path
    _require_not_blank(stored, path)
    looked_up = _by_table(stored, header, geometry, conversion, notes)
    if looked_up is not None:
        return looked_up
    return _gray_values(stored, header, geometry, conversion, notes)


# Largest range of stored values worth a table (16-bit images); a table larger than a quarter of the image is not.
_TABLE_MAX = 1 << 16
_PER_VALUE_VOI = ("VOI LUT Sequence", "Window Center/Width")


def _by_table(
    stored: np.ndarray,
    header: DicomHeader,
    geometry: Geometry,
    conversion: DisplayConversion,
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
    if stored.dtype.kind not in "iu" or conversion.window == "percentile" or header.get("ModalityLUTSequence"):
        return None
    low, high = int(stored.min()), int(stored.max())
    span = high - low + 1
    if span > _TABLE_MAX or 4 * span > stored.size:
        return None
    scratch: list[str] = []
    domain = np.arange(low, high + 1, dtype=stored.dtype)
    try:
        table, window, inverted = _gray_values(domain, header, geometry, conversion, scratch)
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
    header: DicomHeader,
    geometry: Geometry,
    conversion: DisplayConversion,
    notes: list[str],
) -> tuple[np.ndarray, dict[str, Any], bool]:
    values = _modality(stored, header, notes)
    pixels, window = _voi(values, header, conversion, notes)
    inverted = False
    if geometry.photometric == "MONOCHROME1":
        inverted = conversion.invert_monochrome1
        if inverted:
            np.subtract(1.0, pixels, out=pixels)
        else:
            notes.append("MONOCHROME1 left as stored (bright = less dense), as the display conversion says")
    elif str(header.get("PresentationLUTShape", "")).upper() == "INVERSE":
        notes.append("Presentation LUT Shape INVERSE on MONOCHROME2 ignored; only MONOCHROME1 is inverted")
    return pixels, window, inverted


def _parse_dicom(path: Path, preamble: bool, limits: ReadLimits) -> Dataset:
    if preamble:
        check_deflated(path, limits)
    try:
        return pydicom.dcmread(path, force=not preamble)
    except RecursionError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged headers
        raise InputError(
            f"{printable(path)}: the DICOM header cannot be parsed ({failure(exc)}); "
            "the file is damaged, copy it again from PACS"
        ) from None


def _decode_first_frame(header: DicomHeader, ts: UID, geometry: Geometry, notes: list[str]) -> tuple[np.ndarray, str]:
    """Frame 0 as decoded by pydicom and the photometric interpretation of the result."""
    shown = printable(header.path)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise InputError(
            f"{shown}: pydicom cannot decode transfer syntax {printable(ts.name)} ({printable(ts)}); "
            "export the image uncompressed (Explicit VR Little Endian)"
        ) from None
    if not decoder.is_available:
        raise InputError(
            f"{shown}: {ts.name} pixel data needs a decoder that is not installed "
            f"({'; '.join(decoder.missing_dependencies)}); install one of them or export the image uncompressed"
        )
    chatter: list[str] = []
    try:
        with dicom_codecs.native_stderr(chatter):
            array, properties = decoder.as_array(header.ds, index=0)
    except RuntimeError as exc:  # every installed plugin failed
        missing = decoder.missing_dependencies
        advice = (
            f"a decoder that is not installed may read it ({'; '.join(missing)})"
            if missing
            else "the file may be damaged, export it again"
        )
        raise InputError(f"{shown}: {ts.name} pixel data cannot be decoded ({one_line(exc)}); {advice}") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - an inconsistent Image Pixel module, in whatever form
        raise InputError(f"{shown}: the pixel data cannot be read ({failure(exc)}); export the image again") from None
    finally:
        notes.extend(f"decoder: {line}" for line in chatter[:5])
    expected = (geometry.rows, geometry.columns) if geometry.samples == 1 else (geometry.rows, geometry.columns, 3)
    if array.shape != expected:
        raise InputError(
            f"{shown}: the pixel data decoded to shape {array.shape}, not the header's {expected}; "
            "export the image again"
        )
    return array, str(properties["photometric_interpretation"]).upper()


def _to_gray(array: np.ndarray, photometric: str) -> np.ndarray:
    if photometric != "RGB":
        return array[..., 0].astype(np.float32)  # YBR that pydicom left as YBR: Y is the luma already
    gray = np.empty(array.shape[:2], np.float32)
    for rows in _row_blocks(array.shape):
        gray[rows] = array[rows].astype(np.float64) @ _BT601
    return gray


def _modality(stored: np.ndarray, header: DicomHeader, notes: list[str]) -> np.ndarray:
    """Stored values to modality values; a malformed Modality LUT makes every later step meaningless."""
    ds, shown = header.ds, printable(header.path)
    sequence = header.get("ModalityLUTSequence")
    if sequence:
        try:
            problem = _lut_problem(sequence[0], ds, allowed_bits=(8, 16))
        except Exception as exc:  # noqa: BLE001 - a LUT stored as UN or with wrong VRs
            problem = failure(exc)
        if problem:
            raise InputError(f"{shown}: the Modality LUT Sequence is malformed ({problem}); export the image again")
    else:
        slope_raw, intercept_raw = header.get("RescaleSlope"), header.get("RescaleIntercept")
        if (slope_raw is None) != (intercept_raw is None):
            notes.append("only one of Rescale Slope / Rescale Intercept present; ignored, as the standard needs both")
            for keyword in ("RescaleSlope", "RescaleIntercept"):
                if keyword in ds:
                    del ds[keyword]
        elif slope_raw is not None:
            slope, intercept = _finite(slope_raw), _finite(intercept_raw)
            if slope is None or intercept is None or slope == 0:
                raise InputError(
                    f"{shown}: invalid Rescale Slope/Intercept ({printable(slope_raw)}, {printable(intercept_raw)}); "
                    "export the image again"
                )
    with np.errstate(over="ignore", invalid="ignore"):
        values = _rescaled(stored, header) if not sequence else apply_modality_lut(stored, ds)
        low, high = float(np.min(values)), float(np.max(values))
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(high - low)):
        raise InputError(
            f"{shown}: the Modality LUT (Rescale Slope {printable(header.get('RescaleSlope', '-'))}, Intercept "
            f"{printable(header.get('RescaleIntercept', '-'))}) makes pixel values that are not finite numbers; "
            "the header is damaged, export the image again"
        )
    rescaled = not sequence and header.get("RescaleSlope") is not None
    if rescaled and (high - low) < 0.5 * float(np.ptp(stored)) * abs(_finite(header.get("RescaleSlope")) or 1.0):
        raise InputError(
            f"{shown}: Rescale Slope {printable(header.get('RescaleSlope'))} and Intercept "
            f"{printable(header.get('RescaleIntercept'))} are too large for the pixel values (their differences are "
            "lost in rounding); the header is damaged, export the image again"
        )
    if low == high:
        raise InputError(
            f"{shown}: blank image after the Modality LUT (every pixel is {low:g}); "
            "check that the right image was exported"
        )
    return values


def _rescaled(stored: np.ndarray, header: DicomHeader) -> np.ndarray:
    """Rescale Slope/Intercept applied as pydicom's apply_modality_lut does, in float32 where that is exact enough.

    float32 holds every 16-bit value times a slope exactly to 7 digits; values beyond 2**24 get float64.
    """
    slope_raw, intercept_raw = header.get("RescaleSlope"), header.get("RescaleIntercept")
    slope = 1.0 if slope_raw is None else float(_finite(slope_raw) or 1.0)
    intercept = 0.0 if intercept_raw is None else float(_finite(intercept_raw) or 0.0)
    extreme = max(abs(float(stored.min())), abs(float(stored.max()))) * abs(slope) + abs(intercept)
    values: np.ndarray = stored.astype(np.float32 if extreme < 2**24 else np.float64)
    if slope != 1.0:
        values *= slope
    if intercept != 0.0:
        values += intercept
    return values


class _Malformed(Exception):
    """A VOI source of the file that cannot be used; the message says why."""


def _voi(
    values: np.ndarray, header: DicomHeader, conversion: DisplayConversion, notes: list[str]
) -> tuple[np.ndarray, dict]:
    """Modality values to [0, 1] by the file's VOI, else by percentiles, recording which and why."""
    if conversion.window == "percentile":
        return _percentile_window(values, conversion.fallback_percentiles, "requested")
    problems: list[str] = []
    for source, apply in (("VOI LUT Sequence", _voi_lut), ("Window Center/Width", _window)):
        try:
            result = apply(values, header.ds, notes)
        except _Malformed as exc:
            problems.append(f"{source}: {exc}")
            continue
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:  # noqa: BLE001 - a VOI that cannot be read is malformed, never fatal
            problems.append(f"{source}: {failure(exc)}")
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
    low, high = float(lut.min()), float(lut.max())
    scaled = (lut.astype(np.float64) - low) / (high - low)
    pixels = np.empty(values.shape, np.float32)
    for rows in _row_blocks(values.shape):
        index = np.clip(np.rint(values[rows]).astype(np.int64) - first, 0, entries - 1)  # LUTs map integers
        pixels[rows] = scaled[index]
    if high > 2**bits - 1 or high < 2 ** (bits - 1):
        notes.append(
            f"VOI LUT values span {low:g}..{high:g} although its descriptor declares {bits} bits; scaled by the values"
        )
    _require_contrast(pixels, "the LUT maps every pixel to one value")
    explanation = item.get("LUTExplanation")
    window = _window_record(
        "VOI LUT Sequence",
        alternatives=len(sequence),
        explanation=optional_str(explanation),
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
        raise _Malformed(
            f"non-numeric values ({printable(ds['WindowCenter'].value)} / {printable(ds['WindowWidth'].value)})"
        )
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    try:
        # The output range depends on bits, sign and rescale (PS3.3 C.11.2.1.2);
        # windowing the extremes asks pydicom for the range it used.
        black, white = apply_windowing(np.array([-np.inf, np.inf]), ds, index=0)
        if black == white:
            raise _Malformed("its output range is empty")
        pixels = np.empty(values.shape, np.float32)
        for rows in _row_blocks(values.shape):
            windowed = apply_windowing(values[rows].astype(np.float64), ds, index=0)
            pixels[rows] = np.clip((windowed - black) / (white - black), 0.0, 1.0)
    except ValueError as exc:  # width out of range for the function, unknown function
        raise _Malformed(one_line(exc)) from None
    centre, width = centres[0], widths[0]
    _require_contrast(pixels, f"centre {centre:g}, width {width:g} maps every pixel to one value")
    explanations = ds.get("WindowCenterWidthExplanation")
    if isinstance(explanations, str) or explanations is None:
        explanation = optional_str(explanations)
    else:
        explanation = optional_str(explanations[0]) if len(explanations) else None
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
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if not high > low:  # most pixels share one value; stretch the whole range instead
        low, high = float(values.min()), float(values.max())
        reason += "; percentiles coincide, used min/max"
    pixels = np.empty(values.shape, np.float32)
    for rows in _row_blocks(values.shape):
        pixels[rows] = np.clip((values[rows].astype(np.float64) - low) / (high - low), 0.0, 1.0)
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


def _spacing(header: DicomHeader, notes: list[str]) -> tuple[tuple[float, float] | None, str | None, str | None]:
    """PixelSpacing (in the patient, calibrated) before ImagerPixelSpacing (at the detector).

    A zero spacing is what some modalities write for "not known": it counts as absent, not as malformed.
    """
    malformed: list[str] = []
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            raw = header.get(keyword)
        except InputError:
            malformed.append(keyword)
            continue
        if raw is None or raw == "":
            continue
        values = _numbers(raw)
        if values is not None and len(values) == 2 and all(v == 0 for v in values):
            notes.append(f"{keyword} is 0\\0 (unknown); treated as absent")
            continue
        if values is not None and len(values) == 2 and min(values) > 0:
            if malformed:
                notes.append(f"{' and '.join(malformed)} malformed; used {keyword}")
            return (values[0], values[1]), keyword, None
        malformed.append(keyword)
    return None, None, f"malformed {' and '.join(malformed)}" if malformed else "missing"


def _orientation(header: DicomHeader, notes: list[str]) -> tuple[str, str] | None:
    """Patient Orientation (0020,0020): the patient directions of the image's rows and columns, if usable."""
    try:
        raw = header.get("PatientOrientation")
    except InputError:
        notes.append("Patient Orientation (0020,0020) cannot be read; ignored")
        return None
    if raw is None or raw == "":
        return None
    values = [raw] if isinstance(raw, str) else list(raw)
    directions = [printable(str(v)).strip().upper() for v in values]
    if len(directions) != 2 or not all(d and set(d) <= set("APRLHF") for d in directions):
        notes.append(f"Patient Orientation {printable(raw)!s} is not two directions of A, P, R, L, H, F; ignored")
        return None
    return directions[0], directions[1]


def _printable_window(window: dict[str, Any]) -> dict[str, Any]:
    """The window record with its text escaped and its numbers finite (reports are strict JSON)."""
    clean = dict(window)
    for key in ("explanation", "reason", "function"):
        if isinstance(clean.get(key), str):
            clean[key] = printable(clean[key])
    for key in ("centre", "width"):
        value = clean.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            clean[key] = None
    return clean


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


# --- PNG / JPEG / TIFF --------------------------------------------------------


def _image_header(path: Path, kind: str) -> ImageHeader | None:
    with open(path, "rb") as stream:
        if kind == "tiff":
            return tiff_header(stream)
        head = stream.read(1 << 20 if kind == "jpeg" else 64)
    return png_header(head) if kind == "png" else jpeg_header(head)


def _read_image(path: Path, kind: str, conversion: DisplayConversion, min_side: int, limits: ReadLimits) -> Radiograph:
    shown = printable(path)
    try:
        declared = _image_header(path, kind)
    except (OSError, struct.error):
        declared = None
    if declared is None:
        raise InputError(
            f"{shown}: looks like a {kind.upper()} image but its header cannot be read (damaged or cut short); "
            "export it again"
        )
    if declared.pixels > limits.max_pixels:
        raise InputError(
            f"{shown}: {declared.columns}x{declared.rows} pixels is over olvf's limit of "
            f"{limits.max_pixels / 1e6:g} megapixels per image; a radiograph is smaller, check the export"
        )
    require_min_side(declared.rows, declared.columns, min_side, path)
    # imdecode on the bytes: cv2.imread cannot open non-ASCII paths on Windows.
    try:
        image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise InputError(
            f"{shown}: the {kind.upper()} image cannot be decoded ({one_line(exc)}); export it again"
        ) from None
    if image is None:
        raise InputError(
            f"{shown}: looks like a {kind.upper()} image but cannot be decoded (damaged or cut short); export it again"
        )
    if image.shape[:2] != (declared.rows, declared.columns):
        raise InputError(
            f"{shown}: decoded to {image.shape[1]}x{image.shape[0]} pixels although its header says "
            f"{declared.columns}x{declared.rows}; the file is damaged, export it again"
        )
    colour = image.ndim == 3 and image.shape[2] >= 3
    if image.ndim == 3:
        image = image[:, :, 2::-1] if colour else image[:, :, 0]  # BGR(A) to RGB; gray(+alpha) to gray
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(
            f"{shown}: {image.dtype} pixels are not supported; "
            f"save the radiograph as 8- or 16-bit {kind.upper()} or DICOM"
        )
    rows, columns = image.shape[:2]
    require_min_side(rows, columns, min_side, path)
    gray = _to_gray(image, "RGB") if colour else image.astype(np.float32)
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
    return Radiograph(_finish(pixels, path), info)


# --- shared checks ------------------------------------------------------------


def _require_not_blank(values: np.ndarray, path: Path) -> None:
    low, high = values.min(), values.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InputError(f"{printable(path)}: the pixel values are not finite numbers; export the image again")
    if low == high:
        raise InputError(
            f"{printable(path)}: blank image (every pixel is {low:g}); check that the right image was exported"
        )


def _finish(pixels: np.ndarray, path: Path) -> np.ndarray:
    """The display image, read-only (a Radiograph is frozen, and callers share one array), checked once more.

    Whatever the route through the windows, an image with non-finite values or one gray
    everywhere gives no verdict worth having.
    """
    if not np.isfinite(pixels).all():
        raise InputError(
            f"{printable(path)}: the display conversion gives pixel values that are not finite numbers; "
            "the header's window or LUT is damaged, export the image again"
        )
    out = np.ascontiguousarray(pixels, dtype=np.float32)
    np.clip(out, 0.0, 1.0, out=out)
    if out.min() == out.max():
        raise InputError(
            f"{printable(path)}: the display conversion makes every pixel {float(out.min()):g} (no contrast); "
            "check that the right image was exported"
        )
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
