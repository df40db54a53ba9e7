"""Hostile and real-world radiograph files, made by code at test time (nothing stored in the repository).

Each :class:`Case` writes one file derived from a small good phantom DICOM
(320 x 256, 12 bits, like a downsampled lateral lumbar film) and says what
olvf must make of it: ``refusal`` is a fragment of the one-line error the
file must get, ``None`` means it must be read and analysed. ``cls`` groups
cases by the defect classes of issue 16:

- ``vr``: an unknown or wrong VR on elements the reader uses;
- ``syntax``: transfer syntaxes that are not one, deflate truncated or mislabelled;
- ``structure``: nesting, missing preamble or meta, truncation, olvf's own results;
- ``values``: rescale and window values that overflow, NaN, zero spacing;
- ``bomb``: files that claim far more pixels or bytes than they hold;
- ``geometry``: headers that contradict the pixel data, thumbnails, blank images;
- ``text``: escape sequences in header values and file names.

The files are small; the bombs are small on disk and huge once decoded,
which is the point.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

from olvf.phantom import dicom_dataset, make_phantom

SIZE = (320, 256)  # rows, columns
ESCAPES = "\x1b[2K\x1b[1A\x1b[32mall inputs OK\x1b[0m"


@dataclass(frozen=True)
class Case:
    name: str
    cls: str
    refusal: str | None  # a fragment of the error line; None: must give a result
    write: Callable[[Path], None]
    #: for a result: what its report's "input" section must show (how the defect was handled)
    handled: Callable[[dict], bool] | None = None

    def make(self, folder: Path) -> Path:
        path = folder / self.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about the invalid values these files are made of
            self.write(path)
        return path


def noted(fragment: str) -> Callable[[dict], bool]:
    return lambda info: any(fragment in note for note in info["notes"])


def window_fell_back(info: dict) -> bool:
    return info["window"]["source"] == "percentile fallback" and info["window"]["reason"].startswith("malformed")


_GOOD: dict[str, bytes] = {}


def good_dataset() -> Dataset:
    """The good file as a data set (explicit VR little endian, native pixels)."""
    if "dicom" not in _GOOD:
        buffer = io.BytesIO()
        dicom_dataset(make_phantom(7, {"L2": "fresh"}, SIZE)).save_as(buffer, enforce_file_format=True)
        _GOOD["dicom"] = buffer.getvalue()
    return pydicom.dcmread(io.BytesIO(_GOOD["dicom"]))


def good_bytes() -> bytes:
    good_dataset()
    return _GOOD["dicom"]


def write_good(path: Path) -> None:
    path.write_bytes(good_bytes())


def _save(ds: Dataset, path: Path, **options: object) -> None:
    ds.save_as(path, enforce_file_format=True, **options)


def _mutated(change: Callable[[Dataset], None]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        ds = good_dataset()
        change(ds)
        _save(ds, path)

    return write


_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})


def _element_bytes(tag: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element, in the length layout its VR takes."""
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def _patched_vr(keyword: str, new_vr: bytes) -> Callable[[Path], None]:
    """The good file with one element re-encoded under another VR, its value bytes unchanged."""

    def write(path: Path) -> None:
        ds = good_dataset()
        element = ds[keyword]
        data = good_bytes()
        tag, old_vr = int(element.tag), element.VR.encode()
        head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + old_vr
        at = data.index(head)
        if old_vr in _LONG_VRS:
            (length,) = struct.unpack("<I", data[at + 8 : at + 12])
            value, end = data[at + 12 : at + 12 + length], at + 12 + length
        else:
            (length,) = struct.unpack("<H", data[at + 6 : at + 8])
            value, end = data[at + 8 : at + 8 + length], at + 8 + length
        path.write_bytes(data[:at] + _element_bytes(tag, new_vr, value) + data[end:])

    return write


def _compressed(syntax: str, plugin: str | None = None) -> Dataset:
    ds = good_dataset()
    ds.compress(syntax, encoding_plugin=plugin or "", generate_instance_uid=False)
    return ds


def _j2k_patched(change: Callable[[bytearray, int], None], header: Callable[[Dataset], None] | None = None):
    """A lossless JPEG 2000 file whose codestream SIZ marker is edited (``change(codestream, siz_offset)``)."""

    def write(path: Path) -> None:
        ds = _compressed(JPEG2000Lossless, "pylibjpeg")
        from pydicom.encaps import encapsulate, generate_frames

        (frame,) = list(generate_frames(ds.PixelData, number_of_frames=1))
        stream = bytearray(frame)
        siz = stream.find(b"\xff\x4f\xff\x51") + 4
        change(stream, siz)
        ds.PixelData = encapsulate([bytes(stream)])
        if header is not None:
            header(ds)
        _save(ds, path)

    return write


def _siz_size(rows: int, columns: int) -> Callable[[bytearray, int], None]:
    def change(stream: bytearray, siz: int) -> None:
        stream[siz + 4 : siz + 12] = struct.pack(">II", columns, rows)

    return change


def _siz_signed(stream: bytearray, siz: int) -> None:
    stream[siz + 38] |= 0x80


def _deflated_bytes(ds: Dataset) -> bytes:
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _deflate_truncated(path: Path) -> None:
    data = _deflated_bytes(good_dataset())
    path.write_bytes(data[: len(data) * 2 // 3])


def _deflate_mislabelled(path: Path) -> None:
    """File meta says deflated; the data set is plain explicit VR little endian."""
    ds = good_dataset()
    buffer = io.BytesIO()
    buffer.write(b"\0" * 128 + b"DICM")
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    write_file_meta_info(buffer, ds.file_meta, enforce_standard=True)
    body = io.BytesIO()
    write_dataset(_as_writable(body, explicit=True), ds)
    path.write_bytes(buffer.getvalue() + body.getvalue())


def _as_writable(buffer: io.BytesIO, *, explicit: bool) -> pydicom.filebase.DicomFileLike:
    fp = pydicom.filebase.DicomFileLike(buffer)
    fp.is_little_endian, fp.is_implicit_VR = True, not explicit
    return fp


def _header_bytes(ds: Dataset) -> bytes:
    """A data set without pixel data, encoded explicit VR little endian."""
    body = io.BytesIO()
    write_dataset(_as_writable(body, explicit=True), ds)
    return body.getvalue()


def _deflate_bomb(path: Path, side: int = 17000) -> None:
    """A deflated DX of side x side 8-bit zeros: under 1 MB on disk, 289 MB inflated."""
    ds = good_dataset()
    del ds.PixelData
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    for keyword in ("WindowCenter", "WindowWidth"):
        del ds[keyword]
    meta = io.BytesIO()
    meta.write(b"\0" * 128 + b"DICM")
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as out:
        out.write(meta.getvalue())
        out.write(deflater.compress(_header_bytes(ds)))
        out.write(deflater.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, side * side)))
        zeros = bytes(1 << 20)
        left = side * side
        while left:
            out.write(deflater.compress(zeros[: min(left, len(zeros))]))
            left -= min(left, len(zeros))
        out.write(deflater.flush())


def _nested_sequences(path: Path, depth: int = 2000) -> None:
    """2000 sequences inside each other (undefined lengths) just before the pixel data."""
    data = good_bytes()
    pixel_tag = struct.pack("<HH", 0x7FE0, 0x0010) + b"OB"
    at = data.index(pixel_tag[:4])
    open_sq = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    close_sq = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    path.write_bytes(data[:at] + open_sq * depth + close_sq * depth + data[at:])


def _modality_lut_as_un(path: Path) -> None:
    """A valid Modality LUT Sequence whose SQ VR is rewritten as UN, as some archives store it."""
    ds = good_dataset()
    for keyword in ("RescaleIntercept", "RescaleSlope", "RescaleType"):
        del ds[keyword]
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    item.LUTData = np.arange(4096, dtype="<u2").tobytes()
    ds.ModalityLUTSequence = [item]
    buffer = io.BytesIO()
    _save(ds, buffer)
    data = buffer.getvalue()
    marker = struct.pack("<HH", 0x0028, 0x3000) + b"SQ"
    assert data.count(marker) == 1
    path.write_bytes(data.replace(marker, struct.pack("<HH", 0x0028, 0x3000) + b"UN"))


def _with_modality_lut(path: Path) -> None:
    ds = good_dataset()
    for keyword in ("RescaleIntercept", "RescaleSlope", "RescaleType"):
        del ds[keyword]
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    item.LUTData = (np.arange(4096, dtype="<u2") * 4).tobytes()
    ds.ModalityLUTSequence = [item]
    ds.WindowCenter, ds.WindowWidth = str(int(ds.WindowCenter) * 4), str(int(ds.WindowWidth) * 4)
    _save(ds, path)


def _raw(keyword_values: dict[str, object]) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        for keyword, value in keyword_values.items():
            setattr(ds, keyword, value)

    return change


def _no_preamble(path: Path) -> None:
    """A raw data set: no preamble, no DICM, no file meta (group 0008 first)."""
    ds = good_dataset()
    path.write_bytes(_header_bytes(ds))


def _preamble_without_meta(path: Path) -> None:
    ds = good_dataset()
    path.write_bytes(b"\0" * 128 + b"DICM" + _header_bytes(ds))


def _truncated_before_pixels(path: Path) -> None:
    data = good_bytes()
    path.write_bytes(data[: data.index(struct.pack("<HH", 0x7FE0, 0x0010))])


def _own_secondary_capture(path: Path) -> None:
    ds = good_dataset()
    ds.Manufacturer = "olvf"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    _save(ds, path)


def _blank(path: Path) -> None:
    ds = good_dataset()
    ds.PixelData = np.full(SIZE, 1000, "<u2").tobytes()
    _save(ds, path)


def _thumbnail(path: Path) -> None:
    """The good film shrunk to a 100 x 125 thumbnail."""
    ds = good_dataset()
    small = cv2.resize(ds.pixel_array, (100, 125), interpolation=cv2.INTER_AREA)
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.astype("<u2").tobytes()
    _save(ds, path)


def _samples_on_gray_rgb(path: Path) -> None:
    """Photometric RGB and 3 samples per pixel in the header, one sample of gray data in the file."""
    ds = good_dataset()
    ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.PlanarConfiguration = "RGB", 3, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = (np.frombuffer(ds.PixelData, "<u2") >> 4).astype(np.uint8).tobytes()
    for keyword in ("WindowCenter", "WindowWidth"):
        del ds[keyword]
    _save(ds, path)


def _png_bomb(path: Path, side: int = 20000) -> None:
    """A real 20000 x 20000 8-bit gray PNG of zeros: about 0.5 MB on disk, 400 MB decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    deflater = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0 + pixels
    parts = [deflater.compress(row) for _ in range(side)]
    parts.append(deflater.flush())
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)))
        out.write(chunk(b"IDAT", b"".join(parts)))
        out.write(chunk(b"IEND", b""))


def _jpeg_claims(path: Path, side: int = 30000) -> None:
    """A small JPEG whose frame header claims side x side pixels."""
    ok, encoded = cv2.imencode(".jpg", np.full((300, 256), 128, np.uint8))
    data = bytearray(encoded.tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(data))


def _tiff_claims(path: Path, side: int = 30000) -> None:
    ok, encoded = cv2.imencode(".tif", np.full((300, 256), 128, np.uint8))
    data = bytearray(encoded.tobytes())
    (offset,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[offset : offset + 2])
    for i in range(count):
        entry = offset + 2 + 12 * i
        tag, kind = struct.unpack("<HH", data[entry : entry + 4])
        if tag in (256, 257):
            data[entry + 8 : entry + 12] = struct.pack("<I", side) if kind == 4 else struct.pack("<HH", side, 0)
    path.write_bytes(bytes(data))


def _huge_file(path: Path) -> None:
    """A sparse 300 MB file that starts like DICOM: no disk space, just a size over the limit."""
    with open(path, "wb") as out:
        out.write(b"\0" * 128 + b"DICM")
        out.truncate(300 * 2**20)


def _native_claims(path: Path) -> None:
    ds = good_dataset()
    ds.Rows = ds.Columns = 30000
    _save(ds, path)


def _sr_with_escapes(path: Path) -> None:
    """A non-image object (refused) whose Modality and SOP class are terminal escape sequences."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = ESCAPES
    _save(ds, path)


def _ts(value: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        data = good_bytes()
        old = str(good_dataset().file_meta.TransferSyntaxUID).encode()
        old_element = (
            struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(old) + len(old) % 2) + old + b"\0" * (len(old) % 2)
        )
        new = value.encode("latin-1")
        new += b"\0" * (len(new) % 2)
        # the group length must follow the new element's length
        ds = good_dataset()
        group = int(ds.file_meta.FileMetaInformationGroupLength) - len(old_element) + 8 + len(new)
        data = data.replace(old_element, struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(new)) + new)
        length_at = data.index(struct.pack("<HH2sH", 0x0002, 0x0000, b"UL", 4)) + 8
        path.write_bytes(data[:length_at] + struct.pack("<I", group) + data[length_at + 4 :])

    return write


def cases() -> list[Case]:
    """Every hostile file, in a stable order."""
    return [
        # -- VRs the reader meets lazily
        Case("vr-rows-fd.dcm", "vr", "Rows (0028,0010) cannot be read", _patched_vr("Rows", b"FD")),
        Case("vr-columns-zz.dcm", "vr", "cannot be", _patched_vr("Columns", b"ZZ")),
        Case(
            "vr-bits-allocated-fl.dcm",
            "vr",
            "BitsAllocated (0028,0100) cannot be read",
            _patched_vr("BitsAllocated", b"FL"),
        ),
        Case(
            "vr-rescale-slope-fd.dcm",
            "vr",
            "RescaleSlope (0028,1053) cannot be read",
            _patched_vr("RescaleSlope", b"FD"),
        ),
        Case("vr-window-center-fd.dcm", "vr", None, _patched_vr("WindowCenter", b"FD"), window_fell_back),
        Case("vr-window-width-un.dcm", "vr", None, _patched_vr("WindowWidth", b"UN")),
        Case(
            "vr-pixel-spacing-ss.dcm", "vr", None, _patched_vr("PixelSpacing", b"SS"), noted("used ImagerPixelSpacing")
        ),
        Case("vr-modality-lut-un.dcm", "vr", None, _modality_lut_as_un),
        # -- transfer syntaxes
        Case("ts-not-a-uid.dcm", "syntax", "is not a DICOM transfer syntax", _ts("not-a-uid")),
        Case("ts-unknown-uid.dcm", "syntax", "is not a DICOM transfer syntax", _ts("1.2.3.4.5.6")),
        Case("ts-escapes.dcm", "syntax", "\\x1b", _ts("\x1b[2K1.2.840.10008.1.2.1")),
        Case("deflate-truncated.dcm", "syntax", "truncated", _deflate_truncated),
        Case("deflate-mislabelled.dcm", "syntax", "not valid deflate data", _deflate_mislabelled),
        # -- structure
        Case("nested-2000.dcm", "structure", "nests sequences too deeply", _nested_sequences),
        Case("no-preamble.dcm", "structure", None, _no_preamble, handled=noted("no DICOM preamble")),
        Case("preamble-no-meta.dcm", "structure", None, _preamble_without_meta),
        Case("truncated-header.dcm", "structure", "ends before its pixel data", _truncated_before_pixels),
        Case("olvf-sc.dcm", "structure", "a result olvf wrote", _own_secondary_capture),
        Case("modality-lut.dcm", "structure", None, _with_modality_lut),
        # -- values
        Case(
            "rescale-intercept-1e308.dcm",
            "values",
            "too large for the pixel values",
            _mutated(_raw({"RescaleIntercept": "1e308"})),
        ),
        Case("rescale-slope-1e308.dcm", "values", "not finite", _mutated(_raw({"RescaleSlope": "1e308"}))),
        Case(
            "rescale-slope-nan.dcm",
            "values",
            "invalid Rescale Slope/Intercept",
            _mutated(_raw({"RescaleSlope": "nan"})),
        ),
        Case("window-width-inf.dcm", "values", None, _mutated(_raw({"WindowWidth": "1e309"})), window_fell_back),
        Case(
            "spacing-zero.dcm",
            "values",
            None,
            _mutated(_raw({"PixelSpacing": ["0", "0"], "ImagerPixelSpacing": ["0", "0"]})),
            handled=lambda info: info["spacing_reason"] == "missing" and noted("treated as absent")(info),
        ),
        # -- bombs: small files that claim (or hold) far more pixels than a radiograph
        Case("bomb-j2k-claims.dcm", "bomb", "codestream is 20000x20000", _j2k_patched(_siz_size(20000, 20000))),
        Case(
            "bomb-j2k-consistent.dcm",
            "bomb",
            "megapixels",
            _j2k_patched(_siz_size(20000, 20000), _raw({"Rows": 20000, "Columns": 20000})),
        ),
        Case("bomb-deflate.dcm", "bomb", "inflates to more than", _deflate_bomb),
        Case("bomb-native-claims.dcm", "bomb", "megapixels", _native_claims),
        Case("bomb-huge-file.dcm", "bomb", "MiB is over olvf's limit", _huge_file),
        Case("bomb.png", "bomb", "megapixels", _png_bomb),
        Case("bomb.jpg", "bomb", "megapixels", _jpeg_claims),
        Case("bomb.tif", "bomb", "megapixels", _tiff_claims),
        # -- geometry and garbage
        Case("thumbnail.dcm", "geometry", "too small to hold a vertebra", _thumbnail),
        Case(
            "j2k-rows-columns-swapped.dcm",
            "geometry",
            "Rows and Columns swapped",
            _j2k_patched(lambda stream, siz: None, _raw({"Rows": SIZE[1], "Columns": SIZE[0]})),
        ),
        Case(
            "spp3-monochrome.dcm", "geometry", "Samples per Pixel 3 contradicts", _mutated(_raw({"SamplesPerPixel": 3}))
        ),
        Case(
            "spp3-rgb-gray-data.dcm",
            "geometry",
            "one sample per pixel but Samples per Pixel is 3",
            _samples_on_gray_rgb,
        ),
        Case("frames-5-of-1.dcm", "geometry", "Number of Frames is 5", _mutated(_raw({"NumberOfFrames": 5}))),
        Case(
            "bits-stored-over-allocated.dcm",
            "geometry",
            "Bits Stored 16 in Bits Allocated 8",
            _mutated(_raw({"BitsAllocated": 8, "BitsStored": 16, "HighBit": 15})),
        ),
        Case("blank.dcm", "geometry", "blank image", _blank),
        Case(
            "j2k-signed-in-unsigned.dcm",
            "geometry",
            None,
            _j2k_patched(_siz_signed),
            noted("decoded as the codestream says"),
        ),
        # -- text that must not reach a terminal as it is
        Case("sr-escapes.dcm", "text", "\\x1b[2K", _sr_with_escapes),
    ]
