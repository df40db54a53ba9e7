"""A study's results folder: report.json, overlay.png and one Grad-CAM picture per vertebra, all or nothing.

With a DICOM source, the folder also gets the DICOM results a PACS files
with the patient: ``olvf_sc.dcm`` (Secondary Capture of the overlay) and
``olvf_sr.dcm`` (TID 1500 Structured Report), built from the same result.

The folder is built in a staging folder beside it and renamed into place
(:func:`olvf.runtime.atomic.staged_directory`), so no half-written study is
ever left; an existing folder is replaced only with ``force``.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from olvf.errors import OlvfError
from olvf.runtime.atomic import staged_directory
from olvf.runtime.cpu import usable_cores
from olvf.runtime.results import StudyResult
from olvf.runtime.writers.overlay import encode_png, render_heatmap, render_overlay, study_marks
from olvf.runtime.writers.report import DEMO_WARNING, ReportContext, build_report, heatmap_caption, heatmap_name

if TYPE_CHECKING:
    from olvf.runtime.writers.dicom_source import DicomSource

OVERLAY = "overlay.png"
REPORT = "report.json"


def write_study(
    study: StudyResult,
    context: ReportContext,
    folder: Path,
    *,
    force: bool,
    dicom: DicomSource | None = None,
) -> dict[str, Any]:
    """Draw and write one study's folder atomically; returns its report.

    ``dicom``: the source's DICOM header; with it the Secondary Capture and the SR are written too.
    """
    start = perf_counter()
    marks = study_marks(study)
    pixels = study.radiograph.pixels

    def heatmap(i: int) -> bytes:
        return encode_png(render_heatmap(pixels, marks[i], heatmap_caption(study, i)))

    # PNG encoding is most of the writing, and OpenCV releases the GIL while it draws and encodes: the
    # heatmaps are made on the other cores this process may use (idle between studies) while this thread
    # draws and encodes the overlay, the longest single piece (measured: writing 150 -> 120 ms per study).
    with ThreadPoolExecutor(max_workers=max(1, min(usable_cores() - 1, len(marks)))) as pool:
        heatmaps = [pool.submit(heatmap, i) for i in range(len(marks))]
        overlay, layout = render_overlay(
            pixels, marks, decision=study.decision.line, demo_warning=DEMO_WARNING if context.demo else None
        )
        images = {OVERLAY: encode_png(overlay)}
        images.update({heatmap_name(level): f.result() for level, f in zip(study.detections.levels, heatmaps)})
    dicom_files: dict[str, str] = {}
    if dicom is not None:
        from olvf.runtime.writers.dicom_results import SC_NAME, SR_NAME, encode_dicom_results
        from olvf.runtime.writers.dicom_study import study_findings

        # The overlay is drawn BGR (OpenCV); DICOM RGB wants it the other way round.
        images[SC_NAME], images[SR_NAME], _ = encode_dicom_results(
            dicom, overlay[..., ::-1], study_findings(study, context)
        )
        dicom_files = {"secondary_capture": SC_NAME, "structured_report": SR_NAME}
    try:
        with staged_directory(folder, force=force) as staging:
            for name, data in images.items():
                (staging / name).write_bytes(data)
            report = build_report(
                study,
                context,
                overlay={"image": OVERLAY, **layout.to_dict()},
                write_ms=(perf_counter() - start) * 1e3,
            )
            if dicom_files:
                report["dicom"] = dicom_files
            (staging / REPORT).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OlvfError(f"{folder}: cannot write the results ({exc.strerror or exc}); choose another --out") from None
    return report
