"""Read a radiograph as hospitals store it: DICOM, or PNG / JPEG / TIFF.

``read_radiograph(path)`` returns a :class:`Radiograph`: one float32 gray image
in [0, 1] where bright means dense (bone), the sense of MONOCHROME2 after every
step, and a :class:`RadiographInfo` saying what was read and every decision
taken on the way. The info never holds patient identifiers (name, ID, birth
date, accession number, institution), so reports built from it can be shared.

DICOM follows the standard's grayscale pipeline (PS3.4 N.2):

1. the stored values of frame 0, decoded by pydicom with the codecs of the
   base install (:mod:`olvf.runtime.inputs.codecs`: JPEG Lossless, JPEG
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
codestream header and the PNG / JPEG / TIFF header, :mod:`olvf.runtime.inputs.image_headers`):

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
  image the patient faces (:func:`olvf.runtime.steps.regions.geometry_from_orientation`).
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
import os
from pathlib import Path

from olvf.digest import sha256_file
from olvf.errors import InputError
from olvf.runtime.bundle.config import DisplayConversion
from olvf.runtime.inputs.admission import open_checked, sniff
from olvf.runtime.inputs.dicom_gray import _read_dicom
from olvf.runtime.inputs.dicom_header import (
    DEFAULT_LIMITS,
    ReadLimits,
)
from olvf.runtime.inputs.images import MIN_SIDE, Radiograph
from olvf.runtime.inputs.raster import _read_image
from olvf.text import printable


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
    head, size = open_checked(path, limits)
    kind = sniff(head)
    if kind is None:
        raise InputError(
            f"{printable(path)}: neither DICOM nor a PNG, JPEG or TIFF image; export the radiograph from PACS as DICOM"
        )
    digest = sha256_file(path)
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
