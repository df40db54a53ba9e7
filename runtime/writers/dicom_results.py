"""Write one study's DICOM results, the Secondary Capture and the SR, into a folder: both or neither.

The Secondary Capture (RLE Lossless) and the Comprehensive 3D SR are made at
one moment, which both carry as Series, Content and Instance Creation
Date/Time, and both name olvf as their Contributing Equipment.

Files are named by role (``olvf_sc.dcm``, ``olvf_sr.dcm``), never by anything
of the patient. Both objects are built in memory first, so a failure while
building writes nothing; each file is then written atomically, and if the
second write fails the first file is removed again unless it was there
before. Existing files are replaced only with ``force``; their UIDs derive
from the source and the bundle, so a forced re-run replaces the same
instances rather than adding new ones.

While building, pydicom's and highdicom's warnings are withheld (they quote
values, and values copied from the source are patient data) and highdicom's
logger is held at WARNING (its INFO lines name the source's SOP Instance
UID); the number of withheld warnings is returned, without their text.
"""

from __future__ import annotations

import datetime
import io
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import highdicom
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from olvf.atomic import write_bytes_atomic
from olvf.errors import OutputExistsError
from olvf.runtime.writers.dicom_sc import build_secondary_capture
from olvf.runtime.writers.dicom_source import DicomSource, read_dicom_source
from olvf.runtime.writers.dicom_sr import build_measurement_report
from olvf.runtime.writers.findings import StudyFindings

SC_NAME = "olvf_sc.dcm"
SR_NAME = "olvf_sr.dcm"
_QUIET_DIRS = (str(Path(pydicom.__file__).parent), str(Path(highdicom.__file__).parent))


@dataclass(frozen=True)
class DicomResults:
    """Where the objects went. The UIDs identify the patient's study: keep them off consoles and logs."""

    secondary_capture: Path
    structured_report: Path
    sc_sop_instance_uid: str
    sr_sop_instance_uid: str
    withheld_warnings: int  # pydicom/highdicom warnings while encoding; their text may quote patient data


@contextmanager
def _withheld(counter: list[int]) -> Iterator[None]:
    """Drop pydicom's and highdicom's warnings (counted), pass others on; hold highdicom's logger at WARNING."""
    logger = logging.getLogger("highdicom")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        logger.setLevel(level)
    for item in caught:
        if item.filename.startswith(_QUIET_DIRS):
            counter[0] += 1
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def encode(dataset: Dataset) -> bytes:
    """A DICOM Part 10 file (preamble, file meta, dataset) as bytes."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def build_dicom_results(
    source: DicomSource, overlay_rgb: np.ndarray, findings: StudyFindings
) -> tuple[Dataset, Dataset, int]:
    """The Secondary Capture and the SR as datasets (nothing written), and the count of withheld warnings."""
    counter = [0]
    when = datetime.datetime.now()  # one moment for both: their Series, Content and Instance Creation Date/Time
    with _withheld(counter):
        sc = build_secondary_capture(source, overlay_rgb, findings, when)
        sr = build_measurement_report(source, findings, sc, when)
    return sc, sr, counter[0]


def encode_dicom_results(
    source: DicomSource, overlay_rgb: np.ndarray, findings: StudyFindings
) -> tuple[bytes, bytes, int]:
    """The Secondary Capture and the SR as DICOM files in memory, and the count of withheld warnings."""
    sc, sr, withheld = build_dicom_results(source, overlay_rgb, findings)
    counter = [0]
    with _withheld(counter):  # encoding warns about values too
        return encode(sc), encode(sr), withheld + counter[0]


def write_dicom_results(
    folder: str | os.PathLike[str],
    source: DicomSource | str | os.PathLike[str],
    overlay_rgb: np.ndarray,
    findings: StudyFindings,
    *,
    force: bool = False,
) -> DicomResults:
    """Write ``olvf_sc.dcm`` and ``olvf_sr.dcm`` for one source image into ``folder``.

    ``source``: a :class:`DicomSource` or the path of the source DICOM
    (:func:`read_dicom_source` raises :class:`NoPatientContextError` for a
    PNG / JPEG / TIFF). ``overlay_rgb``: the overlay as RGB uint8 (H, W, 3);
    ``overlay.render_overlay`` draws BGR, so pass ``canvas[..., ::-1]``.
    Raises :class:`OutputExistsError` before any work when either file
    exists and ``force`` is not set.
    """
    folder = Path(folder)
    targets = (folder / SC_NAME, folder / SR_NAME)
    if not force:
        for target in targets:
            if target.exists():
                raise OutputExistsError(f"{target} already exists; pass --force to overwrite it")
    if not isinstance(source, DicomSource):
        source = read_dicom_source(source)
    sc, sr, withheld = build_dicom_results(source, overlay_rgb, findings)
    counter = [0]
    with _withheld(counter):  # encoding warns about values too
        blobs = (encode(sc), encode(sr))
    existed = [target.exists() for target in targets]
    written: list[Path] = []
    try:
        for target, blob in zip(targets, blobs):
            write_bytes_atomic(target, blob, force=force)
            written.append(target)
    except BaseException:
        for target, was_there in zip(written, existed):
            if not was_there:
                target.unlink(missing_ok=True)
        raise
    return DicomResults(targets[0], targets[1], str(sc.SOPInstanceUID), str(sr.SOPInstanceUID), withheld + counter[0])
