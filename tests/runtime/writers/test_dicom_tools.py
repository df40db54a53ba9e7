"""olvf's DICOM results checked by independent tools: dicom3tools' dciodvfy, dcmtk, and a real Orthanc PACS.

Each test skips, naming the Debian package, where its tool is missing; CI
installs them. The dciodvfy warnings allowed here are the ones
docs/reference/dicom-objects.md lists and explains ("Checked by independent
tools"); any other warning, and any error, fails.
"""

from __future__ import annotations

import re
import subprocess
from html import escape as html_escape
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_fixtures import ACCESSION, PATIENT_ID, findings_for, overlay_rgb, write_source
from peers import tool

from olvf.runtime.writers import StudyFindings, write_dicom_results
from olvf.runtime.writers import dicom_codes as codes

# Documented in docs/reference/dicom-objects.md: a private coding scheme is by definition not a defined term.
ALLOWED_WARNINGS = (
    re.compile(r"Unrecognized defined term <99OLVF> for value 1 of attribute <Coding Scheme Designator>"),
)

CASES = {
    "monochrome2-demo": {"monochrome1": False, "demo": True},
    "monochrome1-real": {"monochrome1": True, "demo": False},
    "no-vertebra": {"monochrome1": False, "demo": False, "empty": True},
    "gray-overlay": {"monochrome1": False, "demo": False, "gray": True},  # stored MONOCHROME2
}


@pytest.fixture(scope="module", params=sorted(CASES))
def written(request, tmp_path_factory) -> dict[str, Path]:
    case = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    source, phantom = write_source(folder / "source.dcm", monochrome1=case["monochrome1"], size=(1000, 800))
    findings = findings_for(phantom, demo=case["demo"])
    if case.get("empty"):
        findings = StudyFindings((), False, "no vertebral body was found", 0.5, False, findings.algorithm)
    overlay = overlay_rgb(source, findings)
    if case.get("gray"):
        overlay = np.repeat(overlay.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    results = write_dicom_results(folder / "out", source, overlay, findings)
    return {"source": source, "sc": results.secondary_capture, "sr": results.structured_report}


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("role", ["sc", "sr"])
def test_dciodvfy_finds_no_error_and_only_documented_warnings(written, role):
    result = run(tool("dciodvfy"), str(written[role]))
    lines = (result.stdout + result.stderr).splitlines()
    assert lines[0] == ("SCImage" if role == "sc" else "ComprehensiveSR"), lines[:3]  # the IOD it recognised
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors
    warnings = {line for line in lines if line.startswith("Warning")}
    assert all(any(p.search(w) for p in ALLOWED_WARNINGS) for w in warnings), sorted(warnings)


def test_dcmdump_reads_both_objects(written):
    for role, sop_class in (("sc", "SecondaryCaptureImageStorage"), ("sr", "ComprehensiveSRStorage")):
        result = run(tool("dcmdump"), "-q", str(written[role]))
        assert result.returncode == 0, result.stderr
        assert f"=={sop_class}" in result.stdout or f"={sop_class}" in result.stdout
        assert f"[{PATIENT_ID}]" in result.stdout and f"[{ACCESSION}]" in result.stdout


def test_dsr2html_renders_the_report(written, tmp_path):
    html = tmp_path / "sr.html"
    result = run(tool("dsr2html"), str(written["sr"]), str(html))
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr  # dcmtk warns on stderr about structure it dislikes
    text = html.read_text(encoding="utf-8", errors="replace")
    sr = hd.sr.srread(written["sr"])
    (study,) = sr.content.get_image_measurement_groups()
    (reason,) = (i.value for i in study[0].ContentSequence if i.name == codes.MRI_REASON)
    assert "Imaging Measurement Report" in text and "olvf study result" in text
    assert html_escape(reason) in text
    vertebrae = sr.content.get_planar_roi_measurement_groups()
    for group in vertebrae:
        assert f"{group.tracking_identifier} vertebra" in text
    assert ("Fresh osteoporotic vertebral fracture" in text) is bool(vertebrae)
    assert ("DEMO" in text) is sr.SeriesDescription.startswith("DEMO")


def test_orthanc_files_source_capture_and_report_under_one_patient_and_study(orthanc, tmp_path):
    source, phantom = write_source(tmp_path / "source.dcm", size=(1000, 800))
    findings = findings_for(phantom)
    results = write_dicom_results(tmp_path / "out", source, overlay_rgb(source, findings), findings)
    orthanc.store(source, results.secondary_capture, results.structured_report)

    patients, studies = orthanc.get("/patients"), orthanc.get("/studies")
    assert len(patients) == 1 and len(studies) == 1
    study = orthanc.get(f"/studies/{studies[0]}")
    header = pydicom.dcmread(source, stop_before_pixels=True)
    assert study["MainDicomTags"]["StudyInstanceUID"] == header.StudyInstanceUID
    assert study["MainDicomTags"]["AccessionNumber"] == ACCESSION
    assert study["PatientMainDicomTags"]["PatientID"] == PATIENT_ID
    modalities = sorted(orthanc.get(f"/series/{s}")["MainDicomTags"]["Modality"] for s in study["Series"])
    assert modalities == ["DX", "OT", "SR"]
    instances = {i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.get(f"/studies/{studies[0]}/instances")}
    assert instances == {header.SOPInstanceUID, results.sc_sop_instance_uid, results.sr_sop_instance_uid}


def test_orthanc_refuses_a_store_from_an_unconfigured_aet(orthanc, tmp_path):
    # The fixture's guard while Orthanc 1.10 listens for DICOM on every interface: only the configured AET stores.
    source, _ = write_source(tmp_path / "source.dcm", size=(600, 480))
    command = [tool("storescu"), "-aet", "INTRUDER", "-aec", orthanc.aet, "127.0.0.1", str(orthanc.dicom_port)]
    result = run(*command, str(source))
    assert result.returncode != 0 or "Refused" in result.stdout + result.stderr
    assert orthanc.get("/instances") == []
