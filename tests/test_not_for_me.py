"""The demo bundle gives a verdict only on the images it was made for, and says so for every other.

Every negative is made here, none is third-party: phantoms relabelled CT / CHEST / PA in their headers, phantoms
rotated, cropped and squeezed into AP-like proportions, an axial-CT-like slice, a chest-like film and photograph-
like pictures drawn with numpy. In-domain held-out phantoms (seeds the demo never saw) keep their verdicts.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

import olvf
from olvf.phantom import make_phantom, phantom_display, write_dicom

HELD_OUT = range(5000, 5030)  # held-out seeds (docs/how-to/validate-bundle.md): never used to fit the demo
SIZE = (1250, 1000)


@pytest.fixture(scope="module")
def demo(demo_bundle: Path):
    with olvf.load(demo_bundle, backend="onnxruntime", precision="fp32") as rt:
        yield rt


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("film") / "phantom.dcm"
    write_dicom(make_phantom(1, {"L2": "fresh"}, SIZE), path)
    return path


def _relabel(source: Path, target: Path, **elements) -> Path:
    ds = pydicom.dcmread(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for keyword, value in elements.items():
            setattr(ds, keyword, value)
    if "SOPClassUID" in elements:
        ds.file_meta.MediaStorageSOPClassUID = elements["SOPClassUID"]
    ds.save_as(target)
    return target


def sr_text(ds) -> str:
    """Every text value and code meaning of an SR's content tree, one per line (str(ds) elides long sequences)."""
    lines = []
    for item in ds.iterall():
        if item.keyword in ("TextValue", "CodeMeaning"):
            lines.append(str(item.value))
    return "\n".join(lines)


def test_held_out_phantoms_keep_their_verdicts(demo) -> None:
    images = [phantom_display(make_phantom(seed, size=SIZE)) for seed in HELD_OUT]
    results = demo.analyse(images)
    lost = [(seed, r.applicability.reason) for seed, r in zip(HELD_OUT, results) if not r.assessed]
    assert len(lost) <= 1, lost  # the bound: at most 1 in 100; here at most 1 in 30
    assert all(r.decision.recommended is not None for r in results if r.assessed)


def _negatives() -> dict[str, np.ndarray]:
    image = phantom_display(make_phantom(7, size=SIZE))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1000, 0:1000] / 1000.0
    ct = np.full((1000, 1000), 0.05, np.float32)  # an axial slice: a round body, a vertebral ring, the cord
    ct[((xx - 0.5) / 0.42) ** 2 + ((yy - 0.5) / 0.33) ** 2 < 1] = 0.45
    ct[((xx - 0.5) / 0.1) ** 2 + ((yy - 0.6) / 0.09) ** 2 < 1] = 0.9
    ct[((xx - 0.5) / 0.04) ** 2 + ((yy - 0.72) / 0.04) ** 2 < 1] = 0.3
    chest = np.full((1000, 900), 0.75, np.float32)
    for cx in (0.3, 0.7):
        chest[((xx[:, :900] - cx) / 0.17) ** 2 + ((yy[:, :900] - 0.5) / 0.38) ** 2 < 1] = 0.15
    chest += 0.12 * (np.sin(yy[:, :900] * 55) > 0.8)
    photo = cv2.GaussianBlur(rng.random((1000, 1300)).astype(np.float32), (0, 0), 25)
    photo = (photo - photo.min()) / (photo.max() - photo.min())
    stripes = (0.5 + 0.5 * np.sign(np.sin(xx * 120))).astype(np.float32) * (yy > 0.3) * (yy < 0.7)
    return {
        "rotated 90 degrees": np.ascontiguousarray(np.rot90(image)),
        "AP-like (twice as wide)": cv2.resize(image, (image.shape[1] * 2, image.shape[0])),
        "axial CT-like slice": ct,
        "chest-like film": np.clip(chest, 0, 1),
        "smooth photograph-like picture": photo,
        "text-like stripes": stripes * 0.8 + 0.1,
        "noise": rng.random((900, 800)).astype(np.float32),
    }


def test_images_that_are_no_lateral_lumbar_film_get_no_verdict(demo) -> None:
    negatives = _negatives()
    results = demo.analyse(list(negatives.values()))
    verdicts = {name: r.applicability.reason for name, r in zip(negatives, results) if r.assessed}
    assert not verdicts, f"given a verdict: {verdicts}"
    for result in results:
        assert result.decision.recommended is None and len(result) == 0 and len(result.classification) == 0


@pytest.mark.xfail(
    strict=True,
    reason="known limit, measured: the demo detector names the levels of a film hung upside down top to bottom, so "
    "its column passes the anatomy rules, and its crops lie inside the demo's domain; Patient Orientation is not "
    "yet checked against the pixels",
)
def test_a_film_hung_upside_down_gets_no_verdict(demo) -> None:
    image = phantom_display(make_phantom(7, size=SIZE))
    (result,) = demo.analyse([np.ascontiguousarray(image[::-1, ::-1])])
    assert not result.assessed


def test_relabelled_phantoms_are_not_assessed_and_no_finding_reaches_the_dicom_objects(demo_bundle, film, tmp_path):
    from olvf.runtime.cli import main as infer

    inputs = [
        _relabel(film, tmp_path / "ct.dcm", Modality="CT", SOPClassUID="1.2.840.10008.5.1.4.1.1.2"),
        _relabel(film, tmp_path / "chest.dcm", BodyPartExamined="CHEST"),
        _relabel(film, tmp_path / "pa.dcm", ViewPosition="PA"),
    ]
    out = tmp_path / "out"
    code = infer(["--bundle", str(demo_bundle), "--out", str(out), "--dicom", *map(str, inputs)])
    assert code == 9, "every input read, none assessed"
    named = {"ct": "Modality (0008,0060) is CT", "chest": "Body Part Examined (0018,0015) is CHEST",
             "pa": "View Position (0018,5101) is PA"}  # fmt: skip
    for name, element in named.items():
        report = json.loads((out / name / "report.json").read_text())
        assert report["assessed"] is False and report["mri_recommended"] is None
        assert element in report["mri_note"] and report["vertebrae"] == []
        assert sorted(p.name for p in (out / name).iterdir()) == ["olvf_sc.dcm", "olvf_sr.dcm", "overlay.png",
                                                                  "report.json"]  # fmt: skip
        sc = pydicom.dcmread(out / name / "olvf_sc.dcm")
        sr = pydicom.dcmread(out / name / "olvf_sr.dcm")
        assert sc.SeriesDescription.startswith("DEMO - NOT ASSESSED") and element in sc.ImageComments
        text = sr_text(sr)
        assert "Not assessed: outside the intended use" in text and element in text
        assert "Probability of" not in text and "Fresh osteoporotic" not in text, "no finding in the SR"


def test_every_verdict_line_says_demo_and_the_run_says_what_the_bundle_is_for(demo_bundle, film, tmp_path, capsys):
    from olvf.runtime.cli import main as infer

    assert infer(["--bundle", str(demo_bundle), "--out", str(tmp_path / "out"), str(film)]) == 0
    out = capsys.readouterr().out
    assert "bundle intended for lateral radiographs of the lumbar or thoracolumbar spine" in out
    (verdict,) = [line for line in out.splitlines() if "MRI recommended" in line]
    assert verdict.strip().startswith("DEMO, not for diagnosis | MRI recommended: suspected fresh fracture at")
    report = json.loads((tmp_path / "out" / "phantom" / "report.json").read_text())
    assert report["mri_recommended"] is True and "DEMO bundle" in report["mri_note"]
    assert report["applicability"]["assessed"] is True
    assert [c["check"] for c in report["applicability"]["checks"]] == ["header", "anatomy", "domain"]


def test_the_research_override_gives_the_verdict_and_marks_everything(demo_bundle, film, tmp_path, capsys):
    from olvf.runtime.cli import main as infer

    chest = _relabel(film, tmp_path / "chest.dcm", BodyPartExamined="CHEST")
    out = tmp_path / "out"
    assert (
        infer(["--bundle", str(demo_bundle), "--out", str(out), "--dicom", "--outside-intended-use", str(chest)]) == 0
    )
    line = next(x for x in capsys.readouterr().out.splitlines() if "MRI recommended" in x)
    assert "OUTSIDE INTENDED USE (research override): Body Part Examined (0018,0015) is CHEST" in line
    report = json.loads((out / "chest" / "report.json").read_text())
    assert report["assessed"] is True and report["applicability"]["overridden"] is True
    assert report["mri_note"].startswith("OUTSIDE INTENDED USE") and len(report["vertebrae"]) == 6
    sc = pydicom.dcmread(out / "chest" / "olvf_sc.dcm")
    assert "OUTSIDE USE" in sc.SeriesDescription and "OUTSIDE INTENDED USE" in sc.ImageComments
    assert "Result given outside the intended use" in sr_text(pydicom.dcmread(out / "chest" / "olvf_sr.dcm"))
    # and the Python API has the same switch
    with olvf.load(demo_bundle, backend="onnxruntime") as rt:
        assert rt.infer(chest).assessed is False
        assert rt.infer(chest, outside_intended_use=True).applicability.overridden is True
