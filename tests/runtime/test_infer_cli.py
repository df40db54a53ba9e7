"""olvf-infer end to end: phantom radiographs through the cascade to report.json, overlay.png and heatmaps.

The ``cascade_bundle`` detector always reports the same five boxes, so where
every vertebra must be, on the report and on the overlay, is known in advance
(computed here with the letterbox, independently of the CLI).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from olvf.errors import InputError
from olvf.phantom import dicom_dataset, make_phantom, write_dicom
from olvf.runtime.cli import main as infer_main
from olvf.runtime.inputs.discovery import Progress, expand_inputs, study_names
from olvf.runtime.inputs.reader import read_radiograph
from olvf.runtime.steps.detection import empty_detections, letterbox
from olvf.runtime.steps.regions import REGIONS
from olvf.runtime.study.pipeline import StudyPipeline
from olvf.runtime.writers.overlay import DEMO_BACKGROUND, STATE_COLOURS
from tests_data import crop_paths

SIZE = (1250, 1000)  # rows, columns: half the default phantom, for speed
LEVELS = ["L1", "L2", "L3", "L4", "L5"]
TINY_MODELS = {"tiny_resnet", "tiny_densenet", "tiny_resnext"}
FILES = ("m2.dcm", "m1.dcm", "j2k.dcm", "film.png")


def expected_boxes(rows: int, columns: int) -> np.ndarray:
    """The constant detector's boxes (input 320: centres (160, 40 + 60 i), 32 x 30) in original pixels."""
    _, fitted = letterbox(np.zeros((rows, columns), np.float32), (320, 320))
    boxes = np.array([[144, 25 + 60 * i, 176, 55 + 60 * i] for i in range(5)], np.float32)
    return fitted.to_original(boxes)


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = infer_main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> Path:
    """One phantom (L2 fresh) stored four ways: MONOCHROME2, MONOCHROME1, JPEG 2000, 8-bit PNG."""
    folder = tmp_path_factory.mktemp("films")
    phantom = make_phantom(3, {"L2": "fresh"}, SIZE)
    write_dicom(phantom, folder / "m2.dcm")
    # MONOCHROME1 with the exact inverse window: the DICOM window formula is off by half a value, so the
    # centre that mirrors c is 4096 - c (olvf-phantom writes 4095 - c, 1/(width - 1) brighter after inversion).
    inverse = dicom_dataset(phantom, monochrome1=True)
    inverse.WindowCenter = str(4096 - phantom.window_center)
    inverse.save_as(folder / "m1.dcm", enforce_file_format=True)
    write_dicom(phantom, folder / "j2k.dcm", jpeg2000=True)
    display = read_radiograph(folder / "m2.dcm").pixels
    assert cv2.imwrite(str(folder / "film.png"), np.rint(display * 255).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def batch(cascade_bundle: Path, films: Path, tmp_path_factory) -> dict[str, Any]:
    """All four films in one call with --json, as a script would run it."""
    out = tmp_path_factory.mktemp("batch") / "results"
    code, stdout, stderr = run_cli(
        ["--bundle", str(cascade_bundle), "--out", str(out), "--json", *(str(films / f) for f in FILES)]
    )
    return {"code": code, "stdout": stdout, "stderr": stderr, "out": out}


@pytest.fixture(scope="module")
def reports(batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {Path(r["report"]["input"]["path"]).name: r["report"] for r in json.loads(batch["stdout"])}


# --- the report ---------------------------------------------------------------------


def test_json_mode_prints_only_the_reports_and_writes_each_study(batch: dict[str, Any], reports) -> None:
    assert batch["code"] == 0 and batch["stderr"] == ""
    assert set(reports) == set(FILES)
    for name, report in reports.items():
        on_disk = json.loads((batch["out"] / Path(name).stem / "report.json").read_text())
        assert on_disk == report


def test_report_schema(batch: dict[str, Any], reports) -> None:
    report = reports["m2.dcm"]
    assert report["schema"] == "olvf-report/1" and report["warning"].startswith("DEMO")
    assert report["mode"] == "cascade"
    info = report["input"]
    assert info["path"].endswith("m2.dcm") and info["sop_instance_uid"].startswith("1.2.")
    assert info["size"] == [SIZE[1], SIZE[0]] and info["photometric_interpretation"] == "MONOCHROME2"
    assert info["inverted"] is False and info["window"]["source"] == "Window Center/Width"
    assert info["spacing_source"] == "PixelSpacing" and len(info["pixel_spacing_mm"]) == 2
    text = json.dumps(report)
    assert "PHANTOM^OLVF" not in text and "OLVF-PHANTOM" not in text  # the phantom's patient name and ID
    assert set(report["bundle"]) == {"path", "manifest_sha256", "demo", "signature"}
    assert report["bundle"]["demo"] is True
    assert len(report["bundle"]["manifest_sha256"]) == 64 and report["bundle"]["signature"]["status"] == "unsigned"
    # which input this folder holds: its real path and the sha256 of its bytes
    assert report["source"]["path"] == str(Path(info["path"]).resolve()) and len(report["source"]["sha256"]) == 64
    # the phantom records Patient Orientation P\F: rows run towards posterior, so anterior is left
    assert info["patient_orientation"] == ["P", "F"]
    assert report["gradcam_regions"]["anterior_source"].startswith("Patient Orientation (0020,0020) P\\F")
    backend = report["backend"]
    assert (backend["name"], backend["device"], backend["precision"]) == ("onnxruntime", "cpu", "fp32")
    assert backend["detector"]["name"] == "onnxruntime"
    assert report["detection"]["level_rule"].startswith("order: five bodies")
    assert report["gradcam_regions"]["anterior_side"] == "left"
    assert set(report["timings_ms"]) == {"read", "detect", "classify", "applicability", "report", "total"}
    parts = [report["timings_ms"][k] for k in ("read", "detect", "classify", "applicability", "report")]
    assert all(v >= 0 for v in parts) and report["timings_ms"]["total"] == pytest.approx(sum(parts), abs=0.05)
    assert report["timings_shared_by"] == len(FILES)
    assert report["overlay"]["image"] == "overlay.png" and report["overlay"]["scale"] == 1.0

    vertebrae = report["vertebrae"]
    assert [v["level"] for v in vertebrae] == LEVELS
    np.testing.assert_allclose([v["box"] for v in vertebrae], expected_boxes(*SIZE), atol=0.06)
    for v in vertebrae:
        assert v["detector_score"] == pytest.approx(0.9)
        probabilities = v["probabilities"]
        assert list(probabilities) == ["normal", "old", "fresh"]
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert v["prediction"] == max(probabilities, key=probabilities.get)
        assert set(v["models"]) == TINY_MODELS
        assert all(sum(p.values()) == pytest.approx(1.0, abs=1e-5) for p in v["models"].values())
        cam = v["gradcam"]
        # The map is of what the vertebra is shown as (the MRI rule's state), which is its top class unless
        # p(fresh) reaches the operating point.
        suspected = probabilities["fresh"] >= report["operating_point"]["fresh"]
        assert (v["shown_as"] == "suspected fresh") == suspected
        assert v["shown_as"] == "suspected fresh" or v["shown_as"] == v["prediction"] or v["prediction"] == "fresh"
        shown = "fresh" if suspected else v["shown_as"]
        assert cam["image"] == f"{v['level']}_gradcam.png" and cam["target"] == shown
        assert list(cam["regions"]) == list(REGIONS)
        assert all(0.0 <= f <= 1.0 for f in cam["regions"].values())
        assert sum(cam["regions"].values()) == pytest.approx(1.0, abs=1e-3)
        x1, y1, x2, y2 = cam["crop_region"]
        bx1, by1, bx2, by2 = v["box"]
        assert x1 <= bx1 < bx2 <= x2 and y1 <= by1 < by2 <= y2 and x2 - x1 == y2 - y1  # grown, squared
        px, py = cam["peak"]
        assert x1 <= px <= x2 and y1 <= py <= y2
        assert (cam["peak_region"] == "outside_box") == (not (bx1 <= px < bx2 and by1 <= py < by2))
    fresh = [v["probabilities"]["fresh"] for v in vertebrae]
    top = LEVELS[int(np.argmax(fresh))]
    assert report["max_fresh"] == {"level": top, "probability": max(fresh)}
    assert report["mri_recommended"] == (max(fresh) >= report["operating_point"]["fresh"])
    assert top in report["mri_reason"]


def test_monochrome1_and_jpeg2000_give_the_same_answer_as_monochrome2(reports) -> None:
    reference = reports["m2.dcm"]
    assert reports["m1.dcm"]["input"]["inverted"] is True
    assert reports["m1.dcm"]["input"]["photometric_interpretation"] == "MONOCHROME1"
    assert "JPEG 2000" in reports["j2k.dcm"]["input"]["transfer_syntax"]
    # The same display pixels each time (float rounding aside); left un-inverted, p moves by about 0.15.
    for name in ("m1.dcm", "j2k.dcm"):
        for got, want in zip(reports[name]["vertebrae"], reference["vertebrae"]):
            assert got["box"] == want["box"]
            for cls in ("normal", "old", "fresh"):
                assert got["probabilities"][cls] == pytest.approx(want["probabilities"][cls], abs=2e-6), name


def test_png_radiograph_goes_through_the_cascade(reports) -> None:
    png, reference = reports["film.png"], reports["m2.dcm"]
    assert png["input"]["kind"] == "png" and png["input"]["sop_instance_uid"] is None
    assert [v["box"] for v in png["vertebrae"]] == [v["box"] for v in reference["vertebrae"]]
    for got, want in zip(png["vertebrae"], reference["vertebrae"]):  # the PNG holds the same display, rounded to 8 bits
        assert got["probabilities"]["fresh"] == pytest.approx(want["probabilities"]["fresh"], abs=0.01)


def test_cli_agrees_with_the_python_api(cascade_bundle: Path, films: Path, reports) -> None:
    import olvf

    with olvf.load(cascade_bundle) as rt:
        study = rt.infer(films / "m2.dcm")
    got = np.array([list(v["probabilities"].values()) for v in reports["m2.dcm"]["vertebrae"]])
    np.testing.assert_allclose(got, study.classification.probabilities, atol=1e-6)


# --- the pictures -------------------------------------------------------------------


def test_overlay_has_each_box_in_its_class_colour_heat_inside_and_the_demo_banner(batch, reports) -> None:
    report = reports["m2.dcm"]
    image = cv2.imread(str(batch["out"] / "m2" / "overlay.png"), cv2.IMREAD_COLOR)
    top = report["overlay"]["offset"][1]
    assert image.shape == (top + SIZE[0], SIZE[1], 3)  # 1250 rows fit: shown at scale 1
    assert tuple(image[1, -2]) == DEMO_BACKGROUND
    colour = (image.max(axis=2).astype(int) - image.min(axis=2)) > 0
    boxes = expected_boxes(*SIZE)
    for v, (x1, y1, x2, y2) in zip(report["vertebrae"], boxes):
        want = STATE_COLOURS[v["shown_as"]]
        y_mid, x_mid = int((y1 + y2) / 2) + top, int((x1 + x2) / 2)
        for x, y in ((int(x1) - 2, y_mid), (int(np.ceil(x2)) + 1, y_mid), (x_mid, int(y1) - 2 + top)):
            assert tuple(image[y, x]) == want, (v["level"], x, y)
        inside = colour[int(y1) + top + 4 : int(y2) + top - 4, int(x1) + 4 : int(x2) - 4]
        if v["shown_as"] == "normal":  # no finding, no heat: Grad-CAM is drawn only where a finding is
            assert not inside.any(), v["level"]
        else:
            assert inside.mean() > 0.5, v["level"]  # heat inside
    # Between the boxes (where each crop's margin is, and its map too) the film stays gray.
    for (_, _, _, above), (_, below, _, _) in zip(boxes[:-1], boxes[1:]):
        assert not colour[int(above) + top + 8 : int(below) + top - 8].any()
    assert not colour[top : int(boxes[0][1]) + top - 8].any()


def test_one_heatmap_image_per_vertebra(batch, reports) -> None:
    folder = batch["out"] / "m2"
    names = {v["gradcam"]["image"] for v in reports["m2.dcm"]["vertebrae"]}
    assert names == {f"{level}_gradcam.png" for level in LEVELS}
    assert {p.name for p in folder.iterdir()} == names | {"report.json", "overlay.png"}
    for name in names:
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[1] > image.shape[0] >= 320


# --- the human summary, outputs, errors -----------------------------------------------


def test_summary_for_people(cascade_bundle: Path, films: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(["--bundle", str(cascade_bundle), "--out", str(tmp_path), str(films / "m2.dcm")])
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "DEMO bundle: trained on synthetic phantoms only, not for diagnosis"
    assert f"m2.dcm  ->  {tmp_path / 'm2'}/overlay.png" in out
    for level in LEVELS:
        assert any(line.split()[:1] == [level] for line in lines), level
    assert "MRI" in out and "operating point 0.50" in out
    # --backend auto (the default) says what ran and, briefly, why nothing faster did.
    backend = next(line for line in lines if line.startswith("backend "))
    why = r"(auto: TensorRT: .+|--backend auto: first choice)"
    assert re.fullmatch(rf"backend \w+ on [\w:]+ \(fp(32|16); {why}\)", backend)
    assert lines[-1] == "1 study: 1 assessed, 0 not assessed (no verdict), 0 failed"


def test_existing_results_are_kept_without_force_and_replaced_with_it(cascade_bundle, films, tmp_path) -> None:
    args = ["--bundle", str(cascade_bundle), "--out", str(tmp_path)]
    assert run_cli([*args, str(films / "m2.dcm")])[0] == 0
    (tmp_path / "m2" / "mine.txt").write_text("keep me")
    code, out, err = run_cli([*args, str(films / "m2.dcm"), str(films / "m1.dcm")])
    assert code == 8
    assert len(err.splitlines()) == 1 and "m2.dcm" in err and "--force" in err and "Traceback" not in err
    assert (tmp_path / "m2" / "mine.txt").exists() and (tmp_path / "m1" / "report.json").exists()
    assert out.splitlines()[-1] == "2 studies: 1 assessed, 0 not assessed (no verdict), 1 failed"
    assert run_cli([*args, "--force", str(films / "m2.dcm")])[0] == 0
    assert not (tmp_path / "m2" / "mine.txt").exists() and (tmp_path / "m2" / "report.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def structured_report(path: Path) -> Path:
    """A Basic Text SR: a valid DICOM file with no image in it."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, generate_uid(), "SR"
    ds.PatientName = "Doe^Jane"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_bad_files_in_a_batch_get_one_line_each_and_do_not_stop_the_good_one(cascade_bundle, films, tmp_path) -> None:
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a radiograph\n")
    bad = [
        tmp_path / "empty.dcm",
        tmp_path / "notes.txt",
        structured_report(tmp_path / "sr.dcm"),
        tmp_path / "gone.dcm",
    ]
    out_dir = tmp_path / "out"
    code, out, err = run_cli(
        ["--bundle", str(cascade_bundle), "--out", str(out_dir), str(bad[0]), str(films / "m2.dcm"), *map(str, bad[1:])]
    )
    assert code == 3
    lines = err.splitlines()
    assert len(lines) == 4 and "Traceback" not in err and "Doe" not in err
    for path, line, fix in zip(
        bad, lines, ("empty (0 bytes)", "neither DICOM nor", "no pixel data", "no such file; check the path")
    ):
        assert line.startswith("olvf-infer: error: ") and path.name in line and fix in line, line
    assert out.splitlines()[-1] == "5 studies: 1 assessed, 0 not assessed (no verdict), 4 failed"
    assert sorted(p.name for p in out_dir.iterdir()) == ["m2"]


def test_a_study_that_fails_in_the_batch_does_not_sink_the_others(cascade_bundle, films, tmp_path, monkeypatch):
    real = StudyPipeline._decode_and_crop

    def refuse_the_png(self, study):
        if study.radiograph.info.kind == "png":
            raise InputError("synthetic failure of the PNG study")
        return real(self, study)

    monkeypatch.setattr(StudyPipeline, "_decode_and_crop", refuse_the_png)
    code, out, err = run_cli(
        [
            "--bundle",
            str(cascade_bundle),
            "--out",
            str(tmp_path),
            "--json",
            str(films / "film.png"),
            str(films / "m2.dcm"),
        ]
    )
    assert code == 3 and "synthetic failure" in err and (tmp_path / "m2" / "report.json").exists()
    failure, success = json.loads(out)  # stdout stays valid JSON: one object per input, in input order
    assert failure["input"].endswith("film.png") and "report" not in failure
    assert failure["error"] == {"type": "InputError", "exit_code": 3, "message": "synthetic failure of the PNG study"}
    report = success["report"]
    assert success["folder"] == str(tmp_path / "m2") and success["input"].endswith("m2.dcm")
    assert report["input"]["path"].endswith("m2.dcm") and report["timings_shared_by"] == 1


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_two_bad_inputs_of_ten_cost_only_themselves_whatever_the_batch(cascade_bundle, films, tmp_path, batch):
    """A batch of exactly one image used to re-raise and abort the run after earlier batches were written."""
    inputs = []
    for i in range(10):
        path = tmp_path / "in" / f"s{i}.dcm"
        path.parent.mkdir(exist_ok=True)
        if i in (2, 7):
            path.write_bytes(b"DICM" * 40)  # neither DICOM nor an image
        else:
            shutil.copy(films / "m2.dcm", path)
        inputs.append(str(path))
    out = tmp_path / "out"
    code, stdout, err = run_cli(["--bundle", str(cascade_bundle), "--out", str(out), "--batch", str(batch), *inputs])
    assert code == 3 and "Traceback" not in err
    named = [line for line in err.splitlines() if line.startswith("olvf-infer: error: ")]
    assert len(named) == 2 and "s2.dcm" in named[0] and "s7.dcm" in named[1]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"s{i}" for i in range(10) if i not in (2, 7))
    assert stdout.splitlines()[-1] == "10 studies: 8 assessed, 0 not assessed (no verdict), 2 failed"


class FailingRunner:
    """Wraps a loaded runner: fails like a GPU that falls off the bus on its ``fail_on``-th call."""

    def __init__(self, runner, fail_on: int) -> None:
        self.runner, self.fail_on, self.calls = runner, fail_on, 0

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def run(self, feeds):
        self.calls += 1
        if self.calls == self.fail_on:
            from olvf.errors import BackendError

            raise BackendError(f"{self.runner.label} failed: CUDA error: an illegal memory access was encountered")
        return self.runner.run(feeds)


def test_a_backend_failure_mid_run_stops_once_and_blames_no_input(cascade_bundle, films, tmp_path, monkeypatch):
    import olvf

    real_load = olvf.load

    def load_failing_in_the_second_batch(*args, **kwargs):
        rt = real_load(*args, **kwargs)
        # The first batch's 10 vertebrae take three calls at the tiny bundle's maximum batch of 4.
        rt.runner = FailingRunner(rt.runner, fail_on=4)
        return rt

    monkeypatch.setattr(olvf, "load", load_failing_in_the_second_batch)
    inputs = [str(films / "m2.dcm")] * 1 + [str(films / name) for name in ("m1.dcm", "j2k.dcm", "film.png")]
    out = tmp_path / "out"
    code, stdout, err = run_cli(["--bundle", str(cascade_bundle), "--out", str(out), "--batch", "2", *inputs])
    # The studies written before the failure were printed as they were written; no summary line follows.
    assert code == 7 and "m2.dcm" in stdout and "m1.dcm" in stdout and "j2k.dcm" not in stdout
    assert "studies:" not in stdout
    (line,) = err.splitlines()
    assert line.startswith("olvf-infer: error: onnxruntime") and "illegal memory access" in line
    assert not any(name in line for name in ("m1.dcm", "j2k.dcm", "film.png")), "no input is blamed"
    assert sorted(p.name for p in out.iterdir()) == ["m1", "m2"], "the first batch's studies were written"


def test_a_film_without_vertebrae_is_not_assessed_and_needs_a_reader(cascade_bundle, films, tmp_path, monkeypatch):
    """No vertebral body is no evidence of no fracture: no verdict (null, never false), exit 9, the reason said."""
    from olvf.runtime.study.runtime import Runtime

    monkeypatch.setattr(Runtime, "decode", lambda self, raw, fitted: empty_detections("order: 0 bodies found"))
    code, out, err = run_cli(["--bundle", str(cascade_bundle), "--out", str(tmp_path), str(films / "m2.dcm")])
    assert code == 9 and err == "" and "needs a reader" in out
    assert "NOT ASSESSED, no verdict: no vertebral body found" in out
    assert out.splitlines()[-1] == "1 study: 0 assessed, 1 not assessed (no verdict), 0 failed"
    report = json.loads((tmp_path / "m2" / "report.json").read_text())
    assert report["vertebrae"] == [] and report["mri_recommended"] is None and report["max_fresh"] is None
    assert report["assessed"] is False and report["applicability"]["checks"][1]["check"] == "anatomy"
    assert {p.name for p in (tmp_path / "m2").iterdir()} == {"report.json", "overlay.png"}


# --- inputs ---------------------------------------------------------------------------


def test_folders_and_globs_expand_to_radiographs_only(films: Path, tmp_path: Path) -> None:
    root = tmp_path / "pacs"
    (root / "sub").mkdir(parents=True)
    (root / ".cache").mkdir()
    (root / "results").mkdir()
    shutil.copy(films / "m2.dcm", root / "a.DCM")
    shutil.copy(films / "m2.dcm", root / "sub" / "1.2.840.5")  # PACS export: a UID, no extension
    shutil.copy(films / "film.png", root / "sub" / "b.png")
    shutil.copy(films / "m2.dcm", root / ".cache" / "c.dcm")
    shutil.copy(films / "film.png", root / "results" / "overlay.png")
    (root / "notes.txt").write_text("x")
    (root / "DICOMDIR").write_bytes((films / "m2.dcm").read_bytes())
    found = expand_inputs([str(root)], exclude=[root / "results"])
    assert [p.relative_to(root).as_posix() for p in found] == ["a.DCM", "sub/1.2.840.5", "sub/b.png"]
    globbed = expand_inputs([f"{root}/**/*.png", str(root / "a.DCM"), f"{root}/*.png"])
    assert [p.relative_to(root).as_posix() for p in globbed if isinstance(p, Path)] == [
        "results/overlay.png",
        "sub/b.png",
        "a.DCM",
    ]
    assert "no file matches this pattern" in str(globbed[-1])
    (root / "empty").mkdir()
    assert "holds no DICOM" in str(expand_inputs([str(root / "empty")])[0])
    assert study_names(found) == ["a", "1.2.840.5", "b"]


def test_study_folders_are_unique_per_input() -> None:
    paths = [Path("x/scan.dcm"), Path("y/scan.dcm"), Path("z/SCAN.png"), Path("IM0001")]
    assert study_names(paths) == ["scan", "scan-2", "SCAN-3", "IM0001"]


def test_a_folder_argument_runs_every_radiograph_in_it(cascade_bundle, films, tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(films / "m2.dcm", folder / "one.dcm")
    shutil.copy(films / "m2.dcm", folder / "two")
    out_dir = folder / "olvf-out"  # inside the input folder: must not be read back on the second run
    for force in ([], ["--force"]):
        code, stdout, _ = run_cli(["--bundle", str(cascade_bundle), "--out", str(out_dir), *force, str(folder)])
        assert code == 0 and stdout.splitlines()[-1] == "2 studies: 2 assessed, 0 not assessed (no verdict), 0 failed"
    assert sorted(p.name for p in out_dir.iterdir()) == ["one", "two"]


def test_progress_goes_to_a_terminal_only(capsys) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(5, stream)
    progress.advance()
    progress.say("olvf-infer: error: x.dcm: broken")
    progress.close()
    assert "\rolvf-infer: 1/5 studies" in stream.getvalue() and "x.dcm: broken\n" in stream.getvalue()
    quiet = io.StringIO()
    Progress(5, quiet).advance()
    assert quiet.getvalue() == ""


# --- crop images with a classifier-only bundle ------------------------------------------


def test_without_a_detector_each_image_is_one_crop(tiny_bundle: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(["--bundle", str(tiny_bundle), "--out", str(tmp_path), *map(str, crop_paths())])
    assert code == 0 and err == ""
    assert out.startswith("DEMO bundle: trained on synthetic phantoms only, not for diagnosis")
    assert "each image was classified as one vertebral-body crop" in out
    for path in crop_paths():
        assert path.name in out
        assert {p.name for p in (tmp_path / path.stem).iterdir()} == {"report.json", "overlay.png", "crop_gradcam.png"}


def test_crop_json_for_scripts(tiny_bundle: Path, tmp_path: Path) -> None:
    args = ["--bundle", str(tiny_bundle), "--out", str(tmp_path), "--json", "--precision", "fp16"]
    code, out, _ = run_cli([*args, str(crop_paths()[0])])
    (entry,) = json.loads(out)
    report = entry["report"]
    assert code == 0 and report["mode"] == "crop" and report["backend"]["precision"] == "fp16"
    assert report["backend"]["detector"] is None and report["timings_ms"]["detect"] is None
    (v,) = report["vertebrae"]
    assert v["level"] == "crop" and v["box"] == [0, 0, 256, 256] and v["detector_score"] is None
    assert sum(v["probabilities"].values()) == pytest.approx(1.0, abs=1e-5) and set(v["models"]) == TINY_MODELS
    assert sum(v["gradcam"]["regions"].values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    "make_args,code,message",
    [
        (
            lambda b, t: ["--bundle", str(t / "missing"), str(crop_paths()[0])],
            4,
            "does not exist; create it with olvf-export",
        ),
        (lambda b, t: ["--bundle", str(b), str(t / "nope.png")], 3, "nope.png: no such file"),
        (lambda b, t: ["--bundle", str(b), str(Path(__file__))], 3, "neither DICOM nor a PNG"),
        (
            lambda b, t: ["--bundle", str(b), "--backend", "tensorflow", str(crop_paths()[0])],
            7,
            "unknown backend 'tensorflow'",
        ),
    ],
    ids=["missing-bundle", "missing-image", "not-an-image", "unknown-backend"],
)
def test_errors_are_one_line_with_the_fix(tiny_bundle, tmp_path, make_args, code, message) -> None:
    got, _, err = run_cli([*make_args(tiny_bundle, tmp_path), "--out", str(tmp_path / "out")])
    assert got == code
    err = err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engine-max-batch", "0", "--rebuild-engines"], "--engine-max-batch must be at least 1"),
        (["--engine-max-batch", "4", "x.dcm"], "--engine-max-batch applies to engine builds"),
    ],
    ids=["engine-max-batch-range", "engine-max-batch-alone"],
)
def test_argument_errors_exit_2(tiny_bundle: Path, tmp_path: Path, argv: list[str], message: str) -> None:
    got, _, err = run_cli(["--bundle", str(tiny_bundle), "--out", str(tmp_path / "out"), *argv])
    assert got == 2 and message in err and len(err.strip().splitlines()) == 1


def test_tampered_bundle_exits_4(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    with open(bundle / "ensemble_fp32.onnx", "ab") as handle:
        handle.write(b"\0")
    code, _, err = run_cli(["--bundle", str(bundle), "--out", str(tmp_path / "out"), str(crop_paths()[0])])
    assert code == 4 and "does not match the sha256" in err


def test_runtime_runs_without_torch(cascade_bundle: Path, films: Path, tmp_path: Path) -> None:
    """The lean runtime, from DICOM to overlay, where torch, torchvision and ultralytics cannot even be imported."""
    script = f"""
import sys
for name in ("torch", "torchvision", "ultralytics", "tensorrt"):
    sys.modules[name] = None  # any import of these now raises ImportError
from olvf.runtime.cli import main
code = main(["--bundle", {str(cascade_bundle)!r}, "--out", {str(tmp_path)!r}, "--json", {str(films / "m2.dcm")!r}])
assert code == 0, code
assert not any(m.startswith("torch") for m in sys.modules if sys.modules[m] is not None)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [v["level"] for v in json.loads(done.stdout)[0]["report"]["vertebrae"]] == LEVELS
    assert (tmp_path / "m2" / "overlay.png").exists()


def test_nothing_is_written_outside_the_output_folder(cascade_bundle: Path, tmp_path: Path) -> None:
    """No telemetry ids, caches or settings in the home folder: only --out receives files."""
    import os

    from olvf.phantom import make_phantom, write_dicom

    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    write_dicom(make_phantom(1, size=(1250, 1000)), tmp_path / "study.dcm")
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    argv = ["--bundle", str(cascade_bundle), "--out", str(out), str(tmp_path / "study.dcm")]
    script = f"from olvf.runtime.cli import main; raise SystemExit(main({argv!r}))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert list(home.rglob("*")) == [], "files appeared in the home folder"
    assert (out / "study" / "report.json").is_file()
