"""The DICOM codecs olvf needs beyond pydicom's own, and decoders kept from writing to the terminal.

Archived CR and DX images arrive in the transfer syntaxes PACS use: JPEG
Lossless (Process 14, with or without Selection Value 1), JPEG Extended
12-bit, JPEG-LS, JPEG 2000, RLE, deflate. All decode with permissively
licensed codecs in the base install: python-gdcm (BSD; its IJG libjpeg
8/12/16-bit, CharLS and OpenJPEG), pyjpegls (CharLS, BSD),
pylibjpeg-openjpeg and pylibjpeg-rle (MIT); pylibjpeg-libjpeg (GPLv3) is
never needed.

One gap is filled here: pydicom's GDCM plugin refuses JPEG Extended with
12-bit samples (the usual lossy syntax of older CR archives), although GDCM
decodes it. :func:`register` adds a plugin that hands the 12-bit codestream
to GDCM with a 16-bit container; its output matches dcmtk's ``dcmdjpeg``
value for value (tests/runtime/test_pacs_codecs.py).

GDCM's JPEG decoder tries 8-bit first and IJG prints ``Unsupported JPEG data
precision 12`` straight to file descriptor 2 before it retries at 12 bits.
:func:`native_stderr` captures such output of native code around a decode,
so that olvf-infer's stderr keeps one line per bad input; what was captured
becomes a note of the file instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydicom import uid

PLUGIN = "olvf-gdcm-12bit"
DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("gdcm>=3.0.10",)}
_CAPTURED_LIMIT = 4096  # bytes of a decoder's chatter kept as notes


def is_available(syntax: str) -> bool:
    if syntax != uid.JPEGExtended12Bit:
        return False
    try:
        import gdcm  # noqa: F401
    except ImportError:
        return False
    return True


def decode_jpeg_extended_12bit(src: bytes, runner: Any) -> bytes:
    """One JPEG Extended frame of 9 to 12 bits per sample, decoded by GDCM into 16-bit samples."""
    import gdcm

    if runner.bits_stored <= 8:
        raise NotImplementedError("8-bit JPEG Extended is left to the other plugins")
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(element)
    kind = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    if runner.samples_per_pixel > 1:
        image.SetPlanarConfiguration(runner.planar_configuration)
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
    bits = runner.bits_stored
    image.SetPixelFormat(gdcm.PixelFormat(runner.samples_per_pixel, 16, bits, bits - 1, runner.pixel_representation))
    runner.set_option("bits_allocated", 16)
    frame = image.GetBuffer().encode("utf-8", "surrogateescape")  # GDCM returns char* as str
    expected = runner.rows * runner.columns * runner.samples_per_pixel * 2
    if len(frame) != expected:
        raise ValueError(f"GDCM decoded {len(frame)} bytes, expected {expected}")
    return frame


def register() -> None:
    """Add the 12-bit JPEG Extended plugin to pydicom's decoder (once; harmless when GDCM is missing)."""
    from pydicom.pixels import get_decoder

    try:
        get_decoder(uid.JPEGExtended12Bit).add_plugin(PLUGIN, (__name__, "decode_jpeg_extended_12bit"))
    except ValueError:  # added before (the label is taken)
        pass


@contextmanager
def native_stderr(lines: list[str]) -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 inside the block; append it to ``lines``.

    The redirection is the process's, not the thread's: what any other thread
    writes to fd 2 meanwhile is caught too. olvf-serve, which logs from
    several threads while it decodes, therefore writes its log and
    ``sys.stderr`` to a copy of fd 2 taken at start
    (:func:`olvf.runtime.node.studylog.node_stderr`).
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a daemon): nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(_CAPTURED_LIMIT).decode("utf-8", "replace")
            lines.extend(" ".join(line.split()) for line in text.splitlines() if line.strip())
