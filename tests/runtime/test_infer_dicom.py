"""olvf-infer --dicom: the same study's report, overlay and DICOM results, which say the same thing.

The writers themselves are tested in tests/runtime/writers; here the command
line and the pipeline's result objects feed them, and the SR read back by
highdicom must equal report.json vertebra by vertebra.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_fixtures import ACCESSION, PATIENT_ID, PATIENT_NAME, write_source
from peers import tool

from olvf.runtime.cli import main as infer_main
from olvf.runtime.inputs.reader import read_radiograph
from olvf.runtime.steps.decision import SUSPECTED_FRESH
from olvf.runtime.writers import dicom_codes as codes
from olvf.runtime.writers.dicom_sr import shown_probabilities
from olvf.runtime.writers.findings import VertebraFinding


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = infer_main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ran(cascade_bundle: Path, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("dicom-run")
    source, _ = write_source(folder / "lateral.dcm", size=(1250, 1000))
    png = folder / "film.png"
    assert cv2.imwrite(str(png), np.rint(read_radiograph(source).pixels * 255).astype(np.uint8))
    png2 = folder / "film2.png"
    png2.write_bytes(png.read_bytes())
    out = folder / "out"
    code, stdout, stderr = run_cli(
        ["--bundle", str(cascade_bundle), "--out", str(out), "--dicom", str(source), str(png), str(png2)]
    )
    return {"code": code, "stdout": stdout, "stderr": stderr, "out": out, "source": source}


def test_dicom_inputs_get_a_capture_and_a_report_beside_report_json(ran) -> None:
    assert ran["code"] == 0
    study = ran["out"] / "lateral"
    assert {"olvf_sc.dcm", "olvf_sr.dcm", "report.json", "overlay.png"} <= {p.name for p in study.iterdir()}
    report = json.loads((study / "report.json").read_text())
    assert report["dicom"] == {"secondary_capture": "olvf_sc.dcm", "structured_report": "olvf_sr.dcm"}
    source = pydicom.dcmread(ran["source"], stop_before_pixels=True)
    for name in ("olvf_sc.dcm", "olvf_sr.dcm"):
        written = pydicom.dcmread(study / name, stop_before_pixels=True)
        assert written.StudyInstanceUID == source.StudyInstanceUID and written.PatientID == PATIENT_ID
        assert written.AccessionNumber == ACCESSION and written.SeriesInstanceUID != source.SeriesInstanceUID


def test_the_sr_says_what_report_json_says(ran) -> None:
    study = ran["out"] / "lateral"
    report = json.loads((study / "report.json").read_text())
    sr = hd.sr.srread(study / "olvf_sr.dcm")
    operating_point = report["operating_point"]["fresh"]
    groups = sr.content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [v["level"] for v in report["vertebrae"]]
    for group, vertebra in zip(groups, report["vertebrae"]):
        assert group.finding_type == codes.STATE_VALUES[vertebra["shown_as"]]  # the state the overlay draws
        measured = {m.name.value: m.value for m in group.get_measurements()}
        finding = VertebraFinding(
            vertebra["level"], tuple(vertebra["box"]), vertebra["shown_as"], vertebra["probabilities"]
        )
        for name, p in shown_probabilities(finding, operating_point).items():
            assert measured[codes.PROBABILITY_NAMES[name].value] == pytest.approx(100 * p, abs=1e-9)  # percent
            assert p == pytest.approx(vertebra["probabilities"][name], abs=0.005)
        x1, y1, x2, y2 = vertebra["box"]
        corners = sorted(map(tuple, group.roi.value[:4].tolist()))  # Graphic Data is FL: float32
        np.testing.assert_allclose(corners, sorted([(x1, y1), (x2, y1), (x2, y2), (x1, y2)]), rtol=1e-6)
    suspected = [g.tracking_identifier for g in groups if g.finding_type == codes.STATE_VALUES[SUSPECTED_FRESH]]
    assert suspected == report["mri_levels"]
    (mri,) = [
        item
        for container in sr.ContentSequence
        if container.name == codes.QUALITATIVE_EVALUATIONS
        for item in container.ContentSequence
        if item.name == codes.MRI_RECOMMENDED
    ]
    assert report["mri_recommended"] is not None
    assert mri.value == (codes.YES if report["mri_recommended"] else codes.NO)


def test_images_without_patient_context_get_no_dicom_and_one_note(ran) -> None:
    notes = [line for line in ran["stderr"].splitlines() if "no DICOM results are written" in line]
    assert len(notes) == 1, "said once per run, not once per image"
    assert "film" not in notes[0] and PATIENT_NAME.split("^")[0] not in ran["stderr"] + ran["stdout"]
    for name in ("film", "film2"):
        files = {p.name for p in (ran["out"] / name).iterdir()}
        assert "report.json" in files and not {"olvf_sc.dcm", "olvf_sr.dcm"} & files


def test_dciodvfy_finds_no_error_in_what_the_command_wrote(ran) -> None:
    for name in ("olvf_sc.dcm", "olvf_sr.dcm"):
        done = subprocess.run([tool("dciodvfy"), str(ran["out"] / "lateral" / name)], capture_output=True, text=True)
        errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], f"{name}: {errors}"


def test_a_header_that_breaks_the_dicom_writers_fails_that_input_only(
    cascade_bundle: Path, tmp_path, monkeypatch
) -> None:
    """The DICOM writers read elements the analysis never touched (the study's UIDs): a damaged one is that
    film's one-line error, and the film beside it still gets its results."""
    import struct

    from olvf.runtime.writers import dicom_source

    bad, _ = write_source(tmp_path / "bad.dcm", size=(1250, 1000))
    good, _ = write_source(tmp_path / "good.dcm", size=(1250, 1000), seed=4)
    real = dicom_source.read_dicom_source

    def damaged(path, *args, **kwargs):
        if Path(path).name == "bad.dcm":
            raise struct.error("unpack requires a buffer of 4 bytes")  # as pydicom raises on a wrong VR
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dicom_source, "read_dicom_source", damaged)
    code, stdout, stderr = run_cli(
        ["--bundle", str(cascade_bundle), "--out", str(tmp_path / "out"), "--dicom", "--json", str(bad), str(good)]
    )
    assert code == 3, stderr
    assert "Traceback" not in stderr
    (line,) = [x for x in stderr.splitlines() if "bad.dcm" in x]
    assert "could not be analysed (error: unpack requires" in line
    entries = {Path(e["input"]).name: e for e in json.loads(stdout)}
    assert "error" in entries["bad.dcm"] and (tmp_path / "out" / "good" / "olvf_sr.dcm").is_file()
