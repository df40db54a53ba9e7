"""File admission: what a file may be before anything is decoded.

A regular file within the limits, DICOM or a PNG, JPEG or TIFF by its first bytes; and pydicom's warnings about
a file kept as that file's notes, never printed.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom

from olvf.errors import InputError
from olvf.runtime.inputs.dicom_header import (
    DEFAULT_LIMITS,
    ReadLimits,
)
from olvf.text import printable

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


# --- file level -------------------------------------------------------------


def open_checked(path: Path, limits: ReadLimits) -> tuple[bytes, int]:
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


def read_head(path: Path) -> bytes:
    """The first 132 bytes of a file that may be read (see :func:`open_checked`)."""
    return open_checked(path, DEFAULT_LIMITS)[0]


def row_blocks(shape: tuple[int, ...]) -> Iterator[slice]:
    per_row = max(1, int(np.prod(shape[1:])))
    step = max(1, _BLOCK_PIXELS // per_row)
    for start in range(0, shape[0], step):
        yield slice(start, start + step)


def sniff(head: bytes) -> str | None:
    if head[128:132] == b"DICM":
        return "dicom"
    for magic, kind in _IMAGE_MAGIC:
        if head.startswith(magic):
            return kind
    if head[:2] in _RAW_DICOM_STARTS:
        return "raw-dicom"
    return None


@contextmanager
def pydicom_warnings(notes: list[str]) -> Iterator[None]:
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
