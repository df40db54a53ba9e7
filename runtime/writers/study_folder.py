"""A study's results folder: report.json, overlay.png and one Grad-CAM picture per vertebra, all or nothing.

With a DICOM source, the folder also gets the DICOM results a PACS files
with the patient: ``olvf_sc.dcm`` (Secondary Capture of the overlay) and
``olvf_sr.dcm`` (TID 1500 Structured Report), built from the same result.

The folder is built in a staging folder beside it and put in place by one
rename (:mod:`olvf.atomic`), so no half-written study is ever left.

Which input a folder holds is recorded in its ``report.json`` (``source``:
the input's real path and the sha256 of its bytes). Under ``--out``,
:class:`OutputFolder` puts each input's results in the folder named after
the file (``scan``) unless that holds another input's results, then
``scan-2``, ``scan-3``, ...; a different input never lands in a folder,
``force`` replaces only the same input's earlier results, and a folder
without such a record (the user's own, an older olvf's) is never replaced.
The name is chosen and the folder renamed into place under the lock of
``--out``, so concurrent runs on the same ``--out`` take turns for that
instant and cannot both claim one folder.
"""

from __future__ import annotations

import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import olvf.json_text as json_text
from olvf.atomic import Staging, check_replaceable, clean_stale, commit, folder_lock, sync_folder
from olvf.digest import sha256_file
from olvf.errors import OlvfError, OutputExistsError
from olvf.runtime.inputs.discovery import study_name
from olvf.runtime.runners.cpu import usable_cores
from olvf.runtime.study.results import StudyResult
from olvf.runtime.writers.overlay import encode_png, render_heatmap, render_overlay, study_marks
from olvf.runtime.writers.report import (
    DEMO_WARNING,
    SCHEMA,
    ReportContext,
    build_report,
    heatmap_caption,
    heatmap_name,
    verdict_line,
)
from olvf.text import printable

if TYPE_CHECKING:
    from olvf.runtime.writers.dicom_source import DicomSource

OVERLAY = "overlay.png"
REPORT = "report.json"


def source_identity(path: str | os.PathLike[str], sha256: str | None = None) -> tuple[str, str | None]:
    """What makes two inputs the same input: the file's real path (links and ``..`` resolved) and its content.

    A PACS export that reuses a file name for the next patient is another input: its results go to a folder
    of their own and never replace the first patient's. ``sha256``: the content's, where already known;
    otherwise read here from a regular file only (opening a FIFO would wait for a writer forever).
    """
    if sha256 is None:
        try:
            if stat.S_ISREG(os.stat(path).st_mode):
                sha256 = sha256_file(Path(path))
        except OSError:
            sha256 = None
    return os.path.realpath(path), sha256


def recorded_source(folder: Path) -> tuple[str, str | None] | None:
    """The input whose results ``folder`` holds (its report's ``source``); None for any other folder."""
    try:
        with open(folder / REPORT, encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or not str(report.get("schema", "")).startswith("olvf-report"):
        return None
    source = report.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("path"), str):
        return None
    sha = source.get("sha256")
    return source["path"], sha if isinstance(sha, str) else None


class OutputFolder:
    """``--out``: one results folder per input, never another input's (see the module docstring)."""

    def __init__(self, root: Path, *, force: bool) -> None:
        self.root = Path(root)
        self.force = force

    def check(self) -> None:
        """Before any analysis: ``--out`` is a folder this process can create and write into."""
        if self.root.exists() and not self.root.is_dir():
            raise OutputExistsError(f"--out {self.root} is a file, not a folder; choose another --out")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = Staging(self.root / "write-test")
            probe.discard()
        except OSError as exc:
            raise OlvfError(
                f"--out {self.root}: cannot write there ({exc.strerror or exc}); choose a folder you can write to"
            ) from None
        with folder_lock(self.root):
            clean_stale(self.root)

    def _candidates(self, path: Path, sha256: str | None = None) -> tuple[Path | None, Path]:
        """The folder that holds ``path``'s results already (or None) and the first free name."""
        base, real = study_name(path), os.path.realpath(path)
        identity: tuple[str, str | None] | None = None  # the content is read only when a folder names this path
        n = 1
        while True:
            folder = self.root / (base if n == 1 else f"{base}-{n}")
            if not os.path.lexists(folder):
                return None, folder
            recorded = recorded_source(folder) if folder.is_dir() else None
            if recorded is not None and recorded[0] == real:
                identity = identity or source_identity(path, sha256)
                if identity[1] is not None and recorded == identity:
                    return folder, folder
            n += 1

    def existing(self, path: Path) -> Path | None:
        """The folder holding this input's earlier results, if there is one."""
        return self._candidates(path)[0]

    def refuse_existing(self, path: Path) -> None:
        """Before the slow work: without ``force``, an input whose results exist is not analysed again."""
        folder = self.existing(path)
        if folder is not None and not self.force:
            raise OutputExistsError(
                f"{printable(path)}: its results folder {printable(folder)} already exists; pass --force to replace it"
            )

    def place(self, staging: Staging, path: Path, sha256: str | None = None) -> Path:
        """Put a finished staging folder in place for ``path`` (whose analysed content had ``sha256``), under the
        lock of ``--out``."""
        with folder_lock(self.root):
            own, free = self._candidates(path, sha256)
            if own is not None and not self.force:
                raise OutputExistsError(
                    f"{printable(path)}: its results folder {printable(own)} was written meanwhile (another olvf "
                    "run?); pass --force to replace it"
                )
            target = own or free
            commit(staging, target, replace=own is not None)
        return target


def _files(
    study: StudyResult, context: ReportContext, dicom: DicomSource | None, start: float
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of the study's folder, drawn and encoded, and its report."""
    marks = study_marks(study)
    pixels = study.radiograph.pixels

    def heatmap(i: int) -> bytes:
        demo = DEMO_WARNING if context.demo else None
        return encode_png(render_heatmap(pixels, marks[i], heatmap_caption(study, i), demo_warning=demo))

    # PNG encoding is most of the writing, and OpenCV releases the GIL while it draws and encodes: the
    # heatmaps are made on the other cores this process may use (idle between studies) while this thread
    # draws and encodes the overlay, the longest single piece (measured: writing 150 -> 120 ms per study).
    with ThreadPoolExecutor(max_workers=max(1, min(usable_cores() - 1, len(marks)))) as pool:
        heatmaps = [pool.submit(heatmap, i) for i in range(len(marks))]
        overlay, layout = render_overlay(
            pixels,
            marks,
            decision=verdict_line(study, context.demo),
            demo_warning=DEMO_WARNING if context.demo else None,
            headline=study.decision.headline,
            operating_point=study.decision.operating_point if study.assessed else None,
        )
        images = {OVERLAY: encode_png(overlay)}
        images.update({heatmap_name(level): f.result() for level, f in zip(study.detections.levels, heatmaps)})
    dicom_files: dict[str, str | list[str]] = {}
    if dicom is not None:
        from olvf.runtime.writers.dicom_results import SC_NAME, SR_NAME, encode_dicom_results
        from olvf.runtime.writers.dicom_source import identity_cuts
        from olvf.runtime.writers.dicom_study import study_findings

        # The overlay is drawn BGR (OpenCV); DICOM RGB wants it the other way round.
        images[SC_NAME], images[SR_NAME], _ = encode_dicom_results(
            dicom, overlay[..., ::-1], study_findings(study, context)
        )
        dicom_files = {"secondary_capture": SC_NAME, "structured_report": SR_NAME}
        cut = identity_cuts(dicom.header)
        if cut:  # names only: the values are patient data
            dicom_files["identity_cut"] = list(cut)
    report = build_report(
        study, context, overlay={"image": OVERLAY, **layout.to_dict()}, write_ms=(perf_counter() - start) * 1e3
    )
    if dicom_files:
        report["dicom"] = dicom_files
    assert report["schema"] == SCHEMA
    images[REPORT] = (json_text.dumps(report, indent=2) + "\n").encode("utf-8")
    return images, report


def write_study(
    study: StudyResult,
    context: ReportContext,
    destination: Path | OutputFolder,
    *,
    force: bool = False,
    dicom: DicomSource | None = None,
) -> tuple[dict[str, Any], Path]:
    """Draw and write one study's folder atomically; returns its report and the folder written.

    ``destination``: the folder itself (replaced only with ``force``), or an
    :class:`OutputFolder` that chooses it by the input (its own ``force`` applies).
    ``dicom``: the source's DICOM header; with it the Secondary Capture and the SR are written too.
    """
    start = perf_counter()
    files, report = _files(study, context, dicom, start)
    shown = destination.root if isinstance(destination, OutputFolder) else destination
    try:
        if isinstance(destination, OutputFolder):
            staging = Staging(destination.root / study_name(Path(study.source)))
        else:
            check_replaceable(destination, force=force)
            destination.parent.mkdir(parents=True, exist_ok=True)
            staging = Staging(destination)
        try:
            for name, data in files.items():
                _write_durably(staging.path / name, data)
            sync_folder(staging.path)  # durable before it replaces anything: a power cut leaves old or new
            if isinstance(destination, OutputFolder):
                source = report.get("source") or {}
                folder = destination.place(staging, Path(study.source), source.get("sha256"))
            else:
                with folder_lock(destination.parent):
                    check_replaceable(destination, force=force)
                    commit(staging, destination, replace=True)
                folder = destination
        except BaseException:
            staging.discard()
            raise
        sync_folder(folder.parent)
    except OSError as exc:
        raise OlvfError(
            f"{printable(shown)}: cannot write the results ({exc.strerror or exc}); choose another --out"
        ) from None
    return report, folder


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
