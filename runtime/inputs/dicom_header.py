"""A DICOM header checked before its pixels are decoded: every value read safely, every claim compared.

pydicom converts an element's raw bytes when it is first used, so an unknown
or wrong VR (Rows as FD, Window Center as UN) raises there, with whatever
exception the converter raises. :class:`DicomHeader` reads each value the
reader needs through one guard that turns any failure into an
:class:`InputError` naming the element and its tag.

Then, before a decoder sizes anything: the size against
:class:`ReadLimits`; the Image Pixel module's own consistency (Samples per
Pixel against the photometric interpretation, Bits Stored within Bits
Allocated); native pixel data against the length it must have; an
encapsulated frame's codestream header (:mod:`olvf.runtime.inputs.image_headers`)
against the DICOM header; a deflated data set inflated in a counted stream;
and olvf's own results, which a PACS returns with the study.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import get_frame
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

from olvf.errors import InputError
from olvf.runtime.inputs.image_headers import ImageHeader, j2k_header, jpeg_header
from olvf.text import printable

BITS_STORED_RANGE = (8, 16)
GRAY = ("MONOCHROME1", "MONOCHROME2")
OLVF_MANUFACTURER = "olvf"  # what olvf's own DICOM results carry (olvf.runtime.writers.dicom_sc.MANUFACTURER)
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_CHUNK = 1 << 20
#: Float Pixel Data, Double Float Pixel Data, Pixel Data: left to the decoders, which check them against the header
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_NATIVE_SYNTAXES: dict[tuple[bool | None, bool | None], UID] = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


@dataclass(frozen=True)
class ReadLimits:
    """The most one input may make the reader hold; see the module docstring.

    ``max_pixels``: rows x columns of the frame decoded; ``max_bytes``: the
    file on disk and a deflated data set once inflated.
    """

    max_pixels: int = 40_000_000
    max_bytes: int = 256 * 2**20


DEFAULT_LIMITS = ReadLimits()


DEFAULT_LIMITS = ReadLimits()


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return printable(text if len(text) <= 300 else text[:297] + "...")


def failure(exc: BaseException) -> str:
    """An unexpected exception as a short phrase that names its class."""
    return f"{type(exc).__name__}: {one_line(exc)}"


@dataclass(frozen=True)
class Geometry:
    """The Image Pixel module values the pipeline depends on, validated."""

    rows: int
    columns: int
    samples: int
    bits_allocated: int
    bits_stored: int
    photometric: str
    frames: int
    signed: bool


class DicomHeader:
    """Values of a data set read one at a time, each failure an InputError naming its element.

    pydicom converts an element's raw bytes when it is first used, so an
    unknown or wrong VR (Rows as FD, Window Center as UN) raises there, with
    whatever exception the converter raises.
    """

    def __init__(self, ds: Dataset, path: Path) -> None:
        self.ds = ds
        self.path = path

    def element_name(self, keyword: str) -> str:
        tag = tag_for_keyword(keyword)
        return keyword if tag is None else f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"

    def get(self, keyword: str, default: Any = None) -> Any:
        try:
            value = self.ds.get(keyword, default)
        except Exception as exc:  # noqa: BLE001 - any converter failure is this element's
            raise InputError(
                f"{printable(self.path)}: {self.element_name(keyword)} cannot be read ({failure(exc)}); "
                "the header is damaged, export the image again"
            ) from None
        return default if value is None else value

    def integer(self, keyword: str, default: int | None = None) -> int:
        value = self.get(keyword, default)
        if value is None or value == "":
            raise InputError(
                f"{printable(self.path)}: the image lacks {self.element_name(keyword)}; "
                "the file is incomplete, export it again"
            )
        try:
            if isinstance(value, bytes | bytearray | str) or isinstance(value, float) and not value.is_integer():
                raise TypeError(type(value).__name__)
            return int(value)
        except (TypeError, ValueError, OverflowError):
            raise InputError(
                f"{printable(self.path)}: {self.element_name(keyword)} is {printable(repr(value)[:40])}, "
                "not a whole number; the header is damaged, export the image again"
            ) from None

    def text(self, keyword: str) -> str | None:
        return optional_str(self.get(keyword))


def undecodable_element(ds: Dataset) -> str | None:
    """The first element of ``ds`` whose value does not decode, named; None when every one decodes.

    ``Rows (0028,0010) with VR FD (BytesLengthException)``, say, for a caller
    to put after "the header does not decode at".

    pydicom decodes an element when it is first used, so a data set with Rows
    as FD or a Modality of VR XX reads without complaint and raises later,
    wherever the element is first touched. This touches every element now,
    inside sequences too, except the pixel data. The answer names the
    element by keyword, tag and the VR it came with, and the exception's
    class, never its message: a converter's message quotes the raw bytes,
    which may be a patient's name.
    """
    try:
        return _undecodable(ds, "")
    except RecursionError:
        return "a sequence nested too deeply (RecursionError)"


def _undecodable(ds: Dataset, within: str) -> str | None:
    for tag in list(ds.keys()):
        if tag in PIXEL_DATA_TAGS:
            continue
        label = f"{within}{keyword_for_tag(tag) or 'private element'} ({tag >> 16:04X},{tag & 0xFFFF:04X})"
        raw = ds.get_item(tag, keep_deferred=True)
        vr = printable(getattr(raw, "VR", None) or "?")[:8]  # as it came, before pydicom's corrections
        try:
            element = ds[tag]
            value = element.value
        except RecursionError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydicom's converters raise many types; all mean "does not decode"
            return f"{label} with VR {vr} ({type(exc).__name__})"
        if element.VR == "SQ" and value is not None:
            for number, item in enumerate(value, 1):
                found = _undecodable(item, f"{label} item {number} > ")
                if found is not None:
                    return found
    return None


def check_deflated(path: Path, limits: ReadLimits) -> None:
    """A deflated data set, inflated in a stream and counted before pydicom inflates it whole in memory."""
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
        syntax = meta.get("TransferSyntaxUID")
        group_length = meta.get("FileMetaInformationGroupLength")
    except Exception:  # noqa: BLE001 - the full parse that follows says what is wrong
        return
    if syntax != DeflatedExplicitVRLittleEndian:
        return
    shown = printable(path)
    if not isinstance(group_length, int):
        raise InputError(
            f"{shown}: a deflated file without File Meta Information Group Length (0002,0000), so its data set "
            "cannot be found; export the image again"
        )
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    with open(path, "rb") as stream:
        stream.seek(128 + 4 + 12 + group_length)  # preamble, DICM, the group length element, the rest of group 2
        try:
            while chunk := stream.read(_CHUNK):
                while chunk:
                    total += len(inflater.decompress(chunk, _CHUNK))
                    chunk = inflater.unconsumed_tail
                    if total > limits.max_bytes:
                        raise InputError(
                            f"{shown}: its deflated data set inflates to more than {limits.max_bytes / 2**20:.0f} "
                            "MiB, over olvf's limit per input; a radiograph is far smaller, export the single image"
                        )
                if inflater.eof:
                    break
        except zlib.error as exc:
            raise InputError(
                f"{shown}: labelled Deflated Explicit VR Little Endian, but its data set is not valid deflate "
                f"data ({one_line(exc)}); the file is damaged or mislabelled, export it again"
            ) from None
    if not inflater.eof:
        raise InputError(f"{shown}: the deflated data set ends early; the file is truncated, copy it again from PACS")


def refuse_own_results(header: DicomHeader) -> None:
    """olvf's Secondary Capture and SR come back with the study from PACS; they are results, not radiographs."""
    if header.text("Manufacturer") != OLVF_MANUFACTURER:
        return
    sop = header.text("SOPClassUID") or ""
    what = "Secondary Capture of an overlay" if sop == SECONDARY_CAPTURE else f"{UID(sop).name} object"
    raise InputError(
        f"{printable(header.path)}: a result olvf wrote ({printable(what)}, Manufacturer olvf), not a radiograph; "
        "pass the original image"
    )


def require_pixel_data(header: DicomHeader, preamble: bool) -> None:
    ds, shown = header.ds, printable(header.path)
    if "PixelData" in ds:
        return
    if not preamble:
        raise InputError(
            f"{shown}: no DICOM preamble and no pixel data; not an image olvf can read, "
            "export the radiograph from PACS as a DICOM file"
        )
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise InputError(
            f"{shown}: holds floating-point pixel data (a parametric map), not a radiograph's stored values; "
            "pass the DX or CR image"
        )
    meta = getattr(ds, "file_meta", None)
    sop = header.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    name = UID(str(sop)).name if sop else ""
    describes_image = any(k in ds for k in ("Rows", "Columns", "BitsAllocated")) or "Image Storage" in name
    if describes_image:
        raise InputError(
            f"{shown}: the header describes an image ({printable(name) or 'Rows/Columns present'}) but the file "
            "ends before its pixel data; the file is truncated or damaged, copy it again from PACS"
        )
    if sop:
        what = f"{name}, SOP class {sop}" if name != str(sop) else f"SOP class {sop}"
    else:
        what = "no SOP class either, possibly truncated"
    modality = header.text("Modality")
    if modality:
        what += f", modality {modality}"
    raise InputError(
        f"{shown}: holds no pixel data ({printable(what)}); olvf needs the radiograph image itself (DX or CR), "
        "not a report, presentation state or other non-image object"
    )


def transfer_syntax(header: DicomHeader, notes: list[str]) -> UID:
    ds, shown = header.ds, printable(header.path)
    meta = getattr(ds, "file_meta", None)
    declared = meta.get("TransferSyntaxUID") if meta is not None else None
    if declared:
        ts = UID(str(declared).strip("\0 "))
        if not ts.is_valid or not ts.is_transfer_syntax:
            raise InputError(
                f"{shown}: Transfer Syntax UID (0002,0010) {printable(repr(str(declared))[:70])} is not a DICOM "
                "transfer syntax; the file meta is damaged, export the image again"
            )
        if meta is not None and ts != declared:
            meta.TransferSyntaxUID = ts  # trailing padding removed, as pydicom's decoders look it up here
        return ts
    # Raw datasets and some old writers name no transfer syntax; pydicom already had
    # to find the encoding to read the header, and native pixel data shares it.
    is_implicit, is_little = ds.original_encoding
    native = _NATIVE_SYNTAXES.get((is_implicit, is_little))
    if ds["PixelData"].is_undefined_length or native is None:
        raise InputError(
            f"{shown}: the pixel data is compressed but the file names no Transfer Syntax UID; "
            "export the image again from PACS"
        )
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = native  # pydicom's decoders look it up here
    notes.append(f"no Transfer Syntax UID in the file; used {native.name}, the encoding of its header")
    return native


def image_geometry(header: DicomHeader, min_side: int, limits: ReadLimits) -> Geometry:
    shown = printable(header.path)
    absent = [
        header.element_name(name)
        for name in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation")
        if header.get(name) in (None, "")
    ]
    if absent:
        raise InputError(f"{shown}: the image lacks {', '.join(absent)}; the file is incomplete, export it again")
    geometry = Geometry(
        rows=header.integer("Rows"),
        columns=header.integer("Columns"),
        samples=header.integer("SamplesPerPixel", 1),
        bits_allocated=header.integer("BitsAllocated"),
        bits_stored=header.integer("BitsStored"),
        photometric=printable(str(header.get("PhotometricInterpretation")).strip().upper()),
        frames=header.integer("NumberOfFrames", 1) if header.get("NumberOfFrames") not in (None, "") else 1,
        signed=header.integer("PixelRepresentation", 0) == 1,
    )
    low, high = BITS_STORED_RANGE
    if not low <= geometry.bits_stored <= high:
        modality = header.text("Modality") or "unknown modality"
        raise InputError(
            f"{shown}: {geometry.bits_stored}-bit pixels ({printable(modality)}); olvf reads radiographs stored "
            f"with {low} to {high} bits, pass the DX or CR image"
        )
    if (
        geometry.photometric not in GRAY
        and geometry.photometric != "RGB"
        and not geometry.photometric.startswith("YBR")
    ):
        raise InputError(
            f"{shown}: photometric interpretation {geometry.photometric} is not a radiograph's gray or colour "
            "values; export the original image (MONOCHROME1/2)"
        )
    if geometry.rows < 1 or geometry.columns < 1:
        raise InputError(f"{shown}: Rows x Columns is {geometry.rows} x {geometry.columns}; export the image again")
    if geometry.rows * geometry.columns > limits.max_pixels:
        raise InputError(
            f"{shown}: {geometry.columns}x{geometry.rows} pixels is over olvf's limit of "
            f"{limits.max_pixels / 1e6:g} megapixels per image; a radiograph is smaller, check the export"
        )
    require_min_side(geometry.rows, geometry.columns, min_side, header.path)
    if geometry.frames < 1:
        raise InputError(f"{shown}: Number of Frames is {geometry.frames}; export the image again")
    expected_samples = 1 if geometry.photometric in GRAY else 3
    if geometry.samples != expected_samples:
        raise InputError(
            f"{shown}: Samples per Pixel {geometry.samples} contradicts {geometry.photometric} "
            f"({expected_samples} {'sample' if expected_samples == 1 else 'samples'} per pixel); "
            "the header is damaged, export the image again"
        )
    if geometry.bits_allocated not in (8, 16, 32) or geometry.bits_stored > geometry.bits_allocated:
        raise InputError(
            f"{shown}: Bits Stored {geometry.bits_stored} in Bits Allocated {geometry.bits_allocated} is not a "
            "valid pixel layout; the header is damaged, export the image again"
        )
    if header.integer("PixelRepresentation", 0) not in (0, 1):
        raise InputError(f"{shown}: Pixel Representation must be 0 or 1; the header is damaged, export it again")
    return geometry


def require_complete(header: DicomHeader, ts: UID, geometry: Geometry) -> None:
    """Native pixel data must be as long as its header declares: shorter is cut short, far longer is mislabelled."""
    if ts.is_compressed:
        return  # checked against the codestream
    shown = printable(header.path)
    per_pixel = geometry.samples * ((geometry.bits_allocated + 7) // 8)
    frame = geometry.rows * geometry.columns * per_pixel
    if geometry.photometric == "YBR_FULL_422":
        frame = frame * 2 // 3  # 4:2:2 keeps one Cb and one Cr per two pixels
    expected = frame * geometry.frames
    actual = len(header.get("PixelData") or b"")
    if actual < expected:
        if geometry.samples > 1 and actual * geometry.samples == expected:
            raise InputError(
                f"{shown}: the pixel data holds one sample per pixel but Samples per Pixel is {geometry.samples} "
                f"({geometry.photometric}); the header contradicts the image, export it again"
            )
        if actual and actual % frame == 0:
            raise InputError(
                f"{shown}: Number of Frames is {geometry.frames} but the pixel data holds {actual // frame}; "
                "the header is damaged, export the image again"
            )
        raise InputError(
            f"{shown}: the pixel data is truncated ({actual} of {expected} bytes); "
            "the file was cut short, copy it again from PACS"
        )
    if actual >= 2 * expected:
        raise InputError(
            f"{shown}: the pixel data holds {actual / expected:.3g} times what Rows {geometry.rows} x Columns "
            f"{geometry.columns} x Samples per Pixel {geometry.samples} x {geometry.frames} frame(s) declare; "
            "the header contradicts the image, export it again"
        )


def check_codestream(header: DicomHeader, ts: UID, geometry: Geometry, notes: list[str]) -> None:
    """The first frame's codestream must declare the size and samples the header does, before it is decoded."""
    shown = printable(header.path)
    try:
        frame = get_frame(header.get("PixelData"), 0, number_of_frames=geometry.frames)
    except Exception as exc:  # noqa: BLE001 - any failure to find the frame is the file's
        raise InputError(
            f"{shown}: the encapsulated pixel data cannot be split into frames ({failure(exc)}); "
            "the file is damaged, copy it again from PACS"
        ) from None
    if ts == RLELossless:
        _check_rle(frame, geometry, shown)
        return
    found: ImageHeader | None = None
    if ts in JPEG2000TransferSyntaxes or ts.name.startswith("High-Throughput JPEG 2000"):
        found = j2k_header(frame)
    elif ts in JPEGTransferSyntaxes or ts in JPEGLSTransferSyntaxes:
        found = jpeg_header(frame)
    else:
        return  # a syntax without a parser here; the decoder sizes from the header
    if found is None:
        raise InputError(
            f"{shown}: the {ts.name} codestream has no readable frame header; the pixel data is damaged, "
            "copy the file again from PACS"
        )
    declared = (geometry.rows, geometry.columns)
    if (found.rows, found.columns) != declared and found.rows != 0:  # JPEG may defer its height (DNL): 0
        swapped = " (Rows and Columns swapped)" if (found.columns, found.rows) == declared else ""
        raise InputError(
            f"{shown}: the {found.format} codestream is {found.columns}x{found.rows} pixels but the header says "
            f"{geometry.columns}x{geometry.rows}{swapped}; the header contradicts the image, export it again"
        )
    if found.samples != geometry.samples:
        raise InputError(
            f"{shown}: the {found.format} codestream has {found.samples} component(s) but Samples per Pixel is "
            f"{geometry.samples}; the header contradicts the image, export it again"
        )
    if found.bits > geometry.bits_allocated:
        raise InputError(
            f"{shown}: the {found.format} codestream has {found.bits}-bit samples, more than Bits Allocated "
            f"{geometry.bits_allocated}; the header contradicts the image, export it again"
        )
    if found.signed is not None and found.signed != geometry.signed:
        notes.append(
            f"the JPEG 2000 codestream is {'signed' if found.signed else 'unsigned'} but Pixel Representation "
            f"says {'signed' if geometry.signed else 'unsigned'}; decoded as the codestream says"
        )


def _check_rle(frame: bytes, geometry: Geometry, shown: str) -> None:
    if len(frame) < 64:
        raise InputError(f"{shown}: the RLE frame is shorter than its 64-byte header; the pixel data is damaged")
    (segments,) = struct.unpack("<I", frame[:4])
    expected = geometry.samples * (geometry.bits_allocated // 8)
    if segments != expected:
        raise InputError(
            f"{shown}: the RLE frame has {segments} segment(s) but Samples per Pixel {geometry.samples} and Bits "
            f"Allocated {geometry.bits_allocated} need {expected}; the header contradicts the image, export it again"
        )


def optional_str(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return printable(text) or None


def require_min_side(rows: int, columns: int, min_side: int, path: Path) -> None:
    if min(rows, columns) < min_side:
        raise InputError(
            f"{printable(path)}: {columns}x{rows} pixels is too small to hold a vertebra "
            f"(need at least {min_side} on each side); "
            "pass the full radiograph, not a thumbnail"
        )
