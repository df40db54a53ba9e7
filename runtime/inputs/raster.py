"""PNG, JPEG and TIFF radiographs: header limits before decoding, then gray values on the display scale."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from olvf.errors import InputError
from olvf.runtime.bundle.config import DisplayConversion
from olvf.runtime.inputs.dicom_gray import _percentile_window, _to_gray, _window_record
from olvf.runtime.inputs.dicom_header import (
    ReadLimits,
    one_line,
    require_min_side,
)
from olvf.runtime.inputs.image_headers import ImageHeader, jpeg_header, png_header, tiff_header
from olvf.runtime.inputs.images import Radiograph, RadiographInfo, finish_display, require_not_blank
from olvf.text import printable

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
    require_not_blank(gray, path)
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
    return Radiograph(finish_display(pixels, path), info)
