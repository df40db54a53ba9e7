"""What an image claims to be, read from its header before a decoder allocates anything.

A decoder sizes its output from the codestream, not from the DICOM header:
a 4 MB JPEG 2000 file whose SIZ marker says 20000 x 20000 makes OpenJPEG
allocate gigabytes. These parsers read only the few bytes that declare an
image's size, samples and precision (JPEG SOF / JPEG-LS SOF55, JPEG 2000
SIZ, PNG IHDR, the first TIFF IFD), so that the reader can refuse an image
over its limits, or one whose codestream contradicts its DICOM header,
before decoding it. Each returns None when the bytes hold no such header
(the decoder then says what is wrong); none of them raises on garbage.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

# JPEG start-of-frame markers: SOF0-3, 5-7, 9-11, 13-15 (C4 DHT, C8 JPG, CC DAC are not frames) and
# JPEG-LS SOF55 (F7).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length field
_SOS, _EOI = 0xDA, 0xD9
_MAX_SEGMENTS = 4096


@dataclass(frozen=True)
class ImageHeader:
    """What a codestream or image file declares about its first image."""

    format: str  # "JPEG", "JPEG-LS", "JPEG 2000", "PNG", "TIFF"
    rows: int
    columns: int
    samples: int
    bits: int  # bits per sample (precision)
    signed: bool | None = None  # declared by JPEG 2000 only

    @property
    def pixels(self) -> int:
        return self.rows * self.columns


def jpeg_header(data: bytes | memoryview) -> ImageHeader | None:
    """The frame header of a JPEG (any process, lossless included) or JPEG-LS codestream."""
    view = memoryview(data)
    if len(view) < 4 or view[0] != 0xFF or view[1] != 0xD8:
        return None
    at = 2
    for _ in range(_MAX_SEGMENTS):
        while at < len(view) and view[at] == 0xFF and at + 1 < len(view) and view[at + 1] == 0xFF:
            at += 1  # fill bytes
        if at + 4 > len(view) or view[at] != 0xFF:
            return None
        marker = view[at + 1]
        if marker in _STANDALONE:
            at += 2
            continue
        if marker in (_SOS, _EOI):
            return None  # image data before any frame header
        (length,) = struct.unpack(">H", view[at + 2 : at + 4])
        if marker in _SOF:
            if length < 8 or at + 10 > len(view):
                return None
            precision = view[at + 4]
            rows, columns = struct.unpack(">HH", view[at + 5 : at + 9])
            samples = view[at + 9]
            kind = "JPEG-LS" if marker == 0xF7 else "JPEG"
            return ImageHeader(kind, rows, columns, samples, precision)
        if length < 2:
            return None
        at += 2 + length
    return None


def j2k_header(data: bytes | memoryview) -> ImageHeader | None:
    """The SIZ marker of a JPEG 2000 or HTJ2K codestream (a JP2 wrapper is looked through)."""
    view = bytes(data[:65536]) if len(data) > 65536 else bytes(data)
    at = view.find(b"\xff\x4f\xff\x51")  # SOC immediately followed by SIZ
    if at < 0 or at + 4 + 38 > len(view):
        return None
    siz = at + 4
    (length,) = struct.unpack(">H", view[siz : siz + 2])
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", view[siz + 4 : siz + 20])
    (components,) = struct.unpack(">H", view[siz + 36 : siz + 38])
    if components < 1 or siz + 38 + 3 * components > len(view) or length < 38 + 3 * components:
        return None
    ssiz = [view[siz + 38 + 3 * i] for i in range(components)]
    bits = max((s & 0x7F) + 1 for s in ssiz)
    signed = any(s & 0x80 for s in ssiz)
    return ImageHeader("JPEG 2000", max(ysiz - yosiz, 0), max(xsiz - xosiz, 0), components, bits, signed)


def png_header(head: bytes) -> ImageHeader | None:
    """PNG's IHDR chunk: the first chunk, right after the 8-byte signature."""
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    columns, rows = struct.unpack(">II", head[16:24])
    depth, colour = head[24], head[25]
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if samples is None:
        return None
    return ImageHeader("PNG", rows, columns, samples, depth)


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}  # SHORT, LONG, LONG8 (BigTIFF)


def tiff_header(stream: BinaryIO) -> ImageHeader | None:
    """Width, length, samples and bits of the first image (IFD) of a TIFF or BigTIFF file."""
    stream.seek(0)
    head = stream.read(16)
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return None
    order = "<" if head[:2] == b"II" else ">"
    (magic,) = struct.unpack(order + "H", head[2:4])
    if magic == 42:
        (offset,) = struct.unpack(order + "I", head[4:8])
        count_format, entry_size, value_size = "H", 12, 4
    elif magic == 43 and len(head) >= 16:
        (offset,) = struct.unpack(order + "Q", head[8:16])
        count_format, entry_size, value_size = "Q", 20, 8
    else:
        return None
    stream.seek(offset)
    count_bytes = stream.read(struct.calcsize(count_format))
    if len(count_bytes) < struct.calcsize(count_format):
        return None
    (count,) = struct.unpack(order + count_format, count_bytes)
    if count > 4096:
        return None
    table = stream.read(count * entry_size)
    tags: dict[int, int] = {}
    count_code = "I" if entry_size == 12 else "Q"
    for i in range(len(table) // entry_size):
        entry = table[i * entry_size : (i + 1) * entry_size]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag not in (256, 257, 258, 277) or kind not in _TIFF_TYPES:
            continue
        code, size = _TIFF_TYPES[kind]
        (values,) = struct.unpack(order + count_code, entry[4 : entry_size - value_size])
        field = entry[entry_size - value_size :]
        if values * size > value_size:  # the values live elsewhere; the field holds their offset
            (where,) = struct.unpack(order + ("I" if value_size == 4 else "Q"), field)
            stream.seek(where)
            field = stream.read(size)
            if len(field) < size:
                return None
        (tags[tag],) = struct.unpack(order + code, field[:size])  # the first value (one per sample for 258)
    if 256 not in tags or 257 not in tags:
        return None
    return ImageHeader("TIFF", tags[257], tags[256], tags.get(277, 1), tags.get(258, 1))
