"""The phantom radiograph generator: anatomy where the truth says, fractures that show, valid DICOM, a safe CLI.

Most tests draw at 1250x1000 (the same field of view, coarser pixels) to stay
fast; one checks the full default size. Thresholds are in fractions of the
phantom's own display window, i.e. contrast a reader would see.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from olvf.errors import InputError, OutputExistsError
from olvf.phantom import (
    DX_FOR_PRESENTATION,
    LEVELS,
    MAX_VALUE,
    Phantom,
    make_phantom,
    truth_dict,
    write_dicom,
    write_truth,
)
from olvf.phantom.cli import main

SMALL = (1250, 1000)


@functools.cache
def _cached(seed: int, fractures: tuple[tuple[str, str], ...], deformities: tuple[tuple[str, str], ...]) -> Phantom:
    return make_phantom(seed, dict(fractures), SMALL, deformities=dict(deformities))


def phantom(seed: int, fractures: dict[str, str] | None = None, deformities: dict[str, str] | None = None) -> Phantom:
    """A small phantom, drawn once per session for each set of arguments."""
    return _cached(seed, tuple(sorted((fractures or {}).items())), tuple(sorted((deformities or {}).items())))


def level(p: Phantom, name: str):
    return next(v for v in p.levels if v.level == name)


def region_mean(p: Phantom, cx: float, cy: float, half_w_mm: float, half_h_mm: float) -> float:
    mm = 1.0 / p.pixel_spacing_mm
    x0, x1 = int(cx - half_w_mm * mm), int(cx + half_w_mm * mm) + 1
    y0, y1 = int(cy - half_h_mm * mm), int(cy + half_h_mm * mm) + 1
    return float(p.pixels[y0:y1, x0:x1].astype(np.float64).mean())


def centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def bone_extent_mm(p: Phantom, name: str, across: tuple[float, float]) -> float:
    """Height of bright bone in a strip of columns (fractions of the box width from the anterior edge)."""
    x1, y1, x2, y2 = level(p, name).box
    margin = int(8 / p.pixel_spacing_mm)
    xa, xb = int(x1 + across[0] * (x2 - x1)), int(x1 + across[1] * (x2 - x1))
    profile = p.pixels[max(y1 - margin, 0) : y2 + margin, xa:xb].astype(np.float32).mean(1)
    profile = cv2.GaussianBlur(profile[:, None], (1, 0), sigmaX=0.1, sigmaY=0.5 / p.pixel_spacing_mm).ravel()
    threshold = (np.median(profile[margin:-margin]) + np.percentile(profile, 5)) / 2
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], profile > threshold, [0]]))))[::2]
    return float(runs.max()) * p.pixel_spacing_mm


# --------------------------------------------------------------------------- anatomy and truth


def assert_boxes_on_bodies(p: Phantom) -> None:
    """Each box centre is brighter than the soft tissue in front of it and than the discs above and below."""
    window = p.window_width
    bodies = [region_mean(p, *centre(v.box), 6.0, 4.0) for v in p.levels]
    for v, body in zip(p.levels, bodies):
        in_front = region_mean(p, v.box[0] - 14.0 / p.pixel_spacing_mm, centre(v.box)[1], 6.0, 4.0)
        assert body - in_front > 0.05 * window, f"{v.level}: box centre not brighter than the soft tissue in front"
    for (a, body_a), (b, body_b) in zip(zip(p.levels, bodies), zip(p.levels[1:], bodies[1:])):
        (ax, ay), (bx, by) = centre(a.box), centre(b.box)
        disc = region_mean(p, (ax + bx) / 2, (ay + by) / 2, 4.0, 1.0)
        assert min(body_a, body_b) - disc > 0.05 * window, f"no darker disc between {a.level} and {b.level}"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_truth_boxes_lie_on_vertebral_bodies(seed: int) -> None:
    assert_boxes_on_bodies(phantom(seed, {}))


def box_from_pixels(p: Phantom, box: tuple[int, int, int, int]) -> np.ndarray:
    """An independent estimate of a body's box: the bright blob under the box centre, by thresholding.

    The blob leaks into the pedicle behind the body, so only its anterior,
    top and bottom sides mean anything.
    """
    sp = p.pixel_spacing_mm
    margin = int(8 / sp)
    x1, y1, x2, y2 = box
    cx, cy = centre(box)
    threshold = (region_mean(p, cx, cy, 6.0, 4.0) + region_mean(p, x1 - 14.0 / sp, cy, 6.0, 4.0)) / 2
    x0, y0 = max(x1 - margin, 0), max(y1 - margin, 0)
    window = cv2.GaussianBlur(p.pixels[y0 : y2 + margin, x0 : x2 + margin].astype(np.float32), (0, 0), 1.0 / sp)
    mask = (window > threshold).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(2 / sp) | 1,) * 2))
    _, labels = cv2.connectedComponents(mask)
    ys, xs = np.nonzero(labels == labels[int(cy) - y0, int(cx) - x0])
    return np.array([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1])


def sides_off_mm(p: Phantom, box: tuple[int, int, int, int]) -> float:
    """How far (mm) the anterior, top and bottom sides of ``box`` lie from the bright blob's."""
    error = (box_from_pixels(p, box) - np.array(box)) * p.pixel_spacing_mm
    return float(np.abs(error[[0, 1, 3]]).max())


@pytest.mark.parametrize("seed,fractures", [(0, {"L2": "old"}), (4, {"L2": "old"}), (1, {"L1": "fresh"})])
def test_truth_boxes_are_tight(seed: int, fractures: dict[str, str]) -> None:
    p = phantom(seed, fractures, {k: "wedge" for k in fractures})
    off = [sides_off_mm(p, v.box) for v in p.levels]
    # Thresholding sometimes leaks into a neighbour (iliac crest, gas edge); most levels must match.
    assert sum(o <= 2.0 for o in off) >= 5, dict(zip(LEVELS, off))
    shift = int(round(3.0 / p.pixel_spacing_mm))
    for v in p.levels:  # and the check can tell a box 3 mm off
        x1, y1, x2, y2 = v.box
        assert sides_off_mm(p, (x1 - shift, y1 + shift, x2 - shift, y2 + shift)) > 2.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_boxes_are_vertebra_sized_ordered_and_apart(seed: int) -> None:
    p = phantom(seed, {})
    assert [v.level for v in p.levels] == list(LEVELS)
    boxes = np.array([v.box for v in p.levels], float)
    width_mm = (boxes[:, 2] - boxes[:, 0]) * p.pixel_spacing_mm
    height_mm = (boxes[:, 3] - boxes[:, 1]) * p.pixel_spacing_mm
    # Axis-aligned boxes of tilted bodies: L5 and the sacral end lean most.
    assert np.all((width_mm > 32) & (width_mm < 56)), width_mm
    assert np.all((height_mm > 22) & (height_mm < 50)), height_mm
    assert np.all((height_mm[1:4] > 22) & (height_mm[1:4] < 40)), height_mm
    assert np.all(np.diff(boxes[:, 1]) > 0) and np.all(np.diff(boxes[:, 3]) > 0), "not ordered T12..L5 top to bottom"
    for a, b in zip(boxes, boxes[1:]):
        overlap = max(0.0, min(a[3], b[3]) - max(a[1], b[1])) * max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        assert overlap < 0.2 * min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    rows, cols = p.size
    assert boxes[:, :2].min() > 0 and boxes[:, 2].max() < cols and boxes[:, 3].max() < rows
    for v in p.levels:  # intact bodies: 20-33 mm tall, trapezoidal only a little
        ant, mid, post = v.heights_mm
        assert 20 < post < 33 and 0.8 < ant / post < 1.25 and mid <= max(ant, post)


def test_context_vertebrae_are_drawn_but_not_levels() -> None:
    p = phantom(0, {})
    names = [v.level for v in p.context]
    assert "S1" in names and not set(names) & set(LEVELS)
    s1 = next(v for v in p.context if v.level == "S1")
    assert s1.box[1] > level(p, "L5").box[1], "S1 is below L5"
    assert all(v.label == "normal" and v.deformity is None for v in p.context)


def test_full_size_default_is_a_12_bit_radiograph() -> None:
    start = time.perf_counter()
    p = make_phantom()
    elapsed = time.perf_counter() - start
    assert p.size == (2500, 2000) and p.pixels.dtype == np.uint16
    assert 0.15 <= p.pixel_spacing_mm <= 0.2
    assert int(p.pixels.max()) <= MAX_VALUE
    assert not p.pixels.flags.writeable, "the phantom's pixels are frozen with it"
    # Air outside the body is dark, bone bright, and the window spans the patient.
    assert np.percentile(p.pixels, 1) < 0.15 * MAX_VALUE
    lo, hi = p.window_center - p.window_width / 2, p.window_center + p.window_width / 2
    assert 0 <= lo < hi <= MAX_VALUE + 1
    for v in p.levels:
        x1, y1, x2, y2 = v.box
        assert 32 < (x2 - x1) * p.pixel_spacing_mm < 56 and 22 < (y2 - y1) * p.pixel_spacing_mm < 50
        assert lo < region_mean(p, *centre(v.box), 6.0, 4.0) < hi
    assert_boxes_on_bodies(p)
    assert elapsed < 15, f"a full-size phantom took {elapsed:.1f} s; it should take about 1-2 s"


def test_same_seed_same_pixels_other_seed_other_picture() -> None:
    a = make_phantom(7, {"L3": "fresh"}, SMALL)
    b = make_phantom(7, {"L3": "fresh"}, SMALL)
    c = make_phantom(8, {"L3": "fresh"}, SMALL)
    assert np.array_equal(a.pixels, b.pixels) and a.levels == b.levels and a.window_center == b.window_center
    assert np.abs(a.pixels.astype(int) - c.pixels.astype(int)).mean() > 50
    assert [v.box for v in a.levels] != [v.box for v in c.levels]


def test_seed_chooses_fractures_when_none_are_given() -> None:
    chosen = [make_phantom(seed, None, (256, 256)).fractures for seed in range(12)]
    assert chosen == [make_phantom(seed, None, (256, 256)).fractures for seed in range(12)]
    labels = {label for fractures in chosen for label in fractures.values()}
    assert labels == {"old", "fresh"}, "over a dozen seeds both kinds of fracture should appear"
    assert any(not fractures for fractures in chosen), "some spines should be intact"


# --------------------------------------------------------------------------- fractures


@pytest.mark.parametrize("seed", [0, 3])
def test_wedge_fracture_loses_anterior_height(seed: int) -> None:
    intact = phantom(seed, {})
    broken = phantom(seed, {"L2": "fresh"}, {"L2": "wedge"})
    truth = level(broken, "L2")
    assert (truth.label, truth.deformity) == ("fresh", "wedge") and 0.25 <= truth.height_loss <= 0.40
    ant, _, post = truth.heights_mm
    assert 0.55 < ant / post < 0.8
    # Measured on the pixels, in a strip along the anterior wall.
    assert bone_extent_mm(broken, "L2", (0.1, 0.25)) < 0.85 * bone_extent_mm(intact, "L2", (0.1, 0.25))
    assert level(broken, "L1").label == "normal" and level(broken, "L1").deformity is None


@pytest.mark.parametrize("seed", [1, 4])
def test_crush_fracture_lowers_the_box(seed: int) -> None:
    intact, broken = phantom(seed, {}), phantom(seed, {"L3": "old"}, {"L3": "crush"})
    h0 = level(intact, "L3").box[3] - level(intact, "L3").box[1]
    h1 = level(broken, "L3").box[3] - level(broken, "L3").box[1]
    assert h1 < 0.85 * h0


def test_biconcave_fracture_caves_in_the_middle() -> None:
    intact, broken = phantom(2, {}), phantom(2, {"L1": "fresh"}, {"L1": "biconcave"})
    assert bone_extent_mm(broken, "L1", (0.4, 0.6)) < 0.85 * bone_extent_mm(intact, "L1", (0.4, 0.6))
    ant, mid, post = level(broken, "L1").heights_mm
    assert mid < 0.8 * min(ant, post)


def test_old_and_fresh_fractures_look_different_where_the_fracture_is() -> None:
    old = phantom(5, {"L3": "old"}, {"L3": "wedge"})
    fresh = phantom(5, {"L3": "fresh"}, {"L3": "wedge"})
    spur = 2.0 / old.pixel_spacing_mm  # the healed one grew an osteophyte
    assert level(old, "L3").box[1] == pytest.approx(level(fresh, "L3").box[1], abs=spur), "same collapse, same place"
    diff = np.abs(old.pixels.astype(np.int32) - fresh.pixels.astype(np.int32))

    def inside(box: tuple[int, int, int, int]) -> float:
        return float(diff[box[1] : box[3], box[0] : box[2]].mean())

    assert inside(level(old, "L3").box) > 8 * inside(level(old, "L5").box) + 5
    # Healed: a sclerotic, brighter endplate under the collapse.
    x1, y1, x2, y2 = level(old, "L3").box
    top = slice(y1, y1 + (y2 - y1) // 3), slice(x1, x2)
    assert np.percentile(old.pixels[top], 99) > np.percentile(fresh.pixels[top], 99) + 0.03 * old.window_width


def test_invalid_fractures_are_refused_in_one_line() -> None:
    with pytest.raises(InputError, match="unknown level 'L6'.*T12, L1, L2, L3, L4, L5"):
        make_phantom(0, {"L6": "fresh"}, SMALL)
    with pytest.raises(InputError, match="unknown fracture class 'acute' for L2"):
        make_phantom(0, {"L2": "acute"}, SMALL)
    with pytest.raises(InputError, match="unknown deformity 'burst'"):
        make_phantom(0, {"L2": "old"}, SMALL, deformities={"L2": "burst"})
    with pytest.raises(InputError, match="out of range"):
        make_phantom(0, {}, (100, 100))
    with pytest.raises(InputError, match="non-negative"):
        make_phantom(-1)


# --------------------------------------------------------------------------- DICOM and truth files


def check_dicom(path: Path, p: Phantom, photometric: str) -> pydicom.Dataset:
    ds = pydicom.dcmread(path)
    rows, cols = p.size
    spacing = [pytest.approx(p.pixel_spacing_mm, abs=1e-6)] * 2
    expected = {
        "SOPClassUID": DX_FOR_PRESENTATION,
        "Modality": "DX",
        "PatientName": "PHANTOM^OLVF",
        "PatientID": "OLVF-PHANTOM",
        "BurnedInAnnotation": "NO",
        "Rows": rows,
        "Columns": cols,
        "SamplesPerPixel": 1,
        "BitsAllocated": 16,
        "BitsStored": 12,
        "HighBit": 11,
        "PixelRepresentation": 0,
        "PhotometricInterpretation": photometric,
        "RescaleSlope": 1,
        "RescaleIntercept": 0,
        "BodyPartExamined": "LSPINE",
        "ViewPosition": "LL",
        "PresentationIntentType": "FOR PRESENTATION",
        "PresentationLUTShape": "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY",
    }
    for keyword, value in expected.items():
        assert ds[keyword].value == value, keyword
    assert ds.file_meta.MediaStorageSOPClassUID == DX_FOR_PRESENTATION
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY"]  # as a modality writes it: the gate's input
    assert list(map(float, ds.ImagerPixelSpacing)) == spacing and list(map(float, ds.PixelSpacing)) == spacing
    assert "SYNTHETIC" in ds.SeriesDescription.upper() and "PHANTOM" in ds.SeriesDescription.upper()
    assert ds.PatientBirthDate == "" and ds.StudyDate == ""
    for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
        assert uid.is_valid
    # MONOCHROME1 stores MAX - v; the linear window (PS3.3 C.11.2.1.2) then needs centre MAX + 1 - c.
    centre = p.window_center if photometric == "MONOCHROME2" else MAX_VALUE + 1 - p.window_center
    assert float(ds.WindowCenter) == centre and float(ds.WindowWidth) == p.window_width
    stored = p.pixels if photometric == "MONOCHROME2" else MAX_VALUE - p.pixels.astype(np.uint16)
    assert ds.pixel_array.dtype == np.uint16 and np.array_equal(ds.pixel_array, stored)
    return ds


def test_dicom_monochrome2_uncompressed(tmp_path: Path) -> None:
    p = phantom(0, {"L2": "fresh"})
    write_dicom(p, tmp_path / "a.dcm")
    ds = check_dicom(tmp_path / "a.dcm", p, "MONOCHROME2")
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    # Reproducible to the byte, UIDs included; another seed is another study.
    write_dicom(p, tmp_path / "b.dcm")
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()
    write_dicom(phantom(1, {}), tmp_path / "c.dcm")
    other = pydicom.dcmread(tmp_path / "c.dcm")
    assert other.StudyInstanceUID != ds.StudyInstanceUID and other.SOPInstanceUID != ds.SOPInstanceUID


def test_dicom_monochrome1_displays_the_same(tmp_path: Path) -> None:
    p = phantom(0, {})
    write_dicom(p, tmp_path / "m1.dcm", monochrome1=True)
    ds = check_dicom(tmp_path / "m1.dcm", p, "MONOCHROME1")
    write_dicom(p, tmp_path / "m2.dcm")
    assert ds.SOPInstanceUID != pydicom.dcmread(tmp_path / "m2.dcm").SOPInstanceUID, "other pixel data, other instance"


def test_dicom_jpeg2000_is_lossless_at_full_size(tmp_path: Path) -> None:
    p = make_phantom(2, {"L4": "old"})
    write_dicom(p, tmp_path / "j.dcm", jpeg2000=True)
    ds = check_dicom(tmp_path / "j.dcm", p, "MONOCHROME2")
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert ds.LossyImageCompression == "00"
    write_dicom(p, tmp_path / "raw.dcm")
    assert (tmp_path / "j.dcm").stat().st_size < 0.8 * (tmp_path / "raw.dcm").stat().st_size
    assert ds.SOPInstanceUID == pydicom.dcmread(tmp_path / "raw.dcm").SOPInstanceUID, "lossless: same instance"


def test_writers_refuse_to_overwrite_without_force(tmp_path: Path) -> None:
    p = phantom(0, {})
    target = tmp_path / "x.dcm"
    target.write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="--force"):
        write_dicom(p, target)
    with pytest.raises(OutputExistsError):
        write_truth(p, target)
    assert target.read_bytes() == b"mine"
    write_dicom(p, target, force=True)
    check_dicom(target, p, "MONOCHROME2")


def test_truth_file_holds_what_the_phantom_holds(tmp_path: Path) -> None:
    p = phantom(0, {"L2": "fresh"}, {"L2": "wedge"})
    write_truth(p, tmp_path / "t.json", photometric_interpretation="MONOCHROME2")
    truth = json.loads((tmp_path / "t.json").read_text())
    assert truth == json.loads(json.dumps(truth_dict(p, photometric_interpretation="MONOCHROME2")))
    assert (truth["rows"], truth["columns"], truth["seed"]) == (*p.size, 0)
    assert truth["pixel_spacing_mm"] == p.pixel_spacing_mm and truth["anterior"] == "left"
    assert [v["box"] for v in truth["levels"]] == [list(v.box) for v in p.levels]
    l2 = next(v for v in truth["levels"] if v["level"] == "L2")
    assert (l2["class"], l2["deformity"]) == ("fresh", "wedge")


# --------------------------------------------------------------------------- command line


def test_cli_writes_dicom_and_truth(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo.dcm"
    argv = [str(out), "--seed", "3", "--fracture", "L2:fresh", "--fracture", "L4:old:crush", "--size", "1250x1000"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "demo.dcm" in line and "demo.json" in line
    assert "L2 fresh" in line and "L4 old crush" in line and "T12 L1 L2 L3 L4 L5" in line
    p = make_phantom(3, {"L2": "fresh", "L4": "old"}, SMALL, deformities={"L4": "crush"})
    check_dicom(out, p, "MONOCHROME2")
    truth = json.loads((tmp_path / "demo.json").read_text())
    assert truth["photometric_interpretation"] == "MONOCHROME2" and truth["dicom"] == "demo.dcm"
    assert truth["levels"] == [v.as_dict() for v in p.levels]


def test_cli_monochrome1_jpeg2000_and_no_fractures(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.dcm"
    assert main([str(out), "--seed", "11", "--monochrome1", "--jpeg2000", "--no-fractures", "--size", "512x512"]) == 0
    assert "fractures: none" in capsys.readouterr().out
    ds = check_dicom(out, make_phantom(11, {}, (512, 512)), "MONOCHROME1")
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    truth = json.loads((tmp_path / "m.json").read_text())
    assert truth["photometric_interpretation"] == "MONOCHROME1"
    assert all(v["class"] == "normal" for v in truth["levels"])


def test_cli_refuses_to_overwrite_without_force(tmp_path: Path, capsys) -> None:
    out = tmp_path / "p.dcm"
    argv = [str(out), "--size", "512x512", "--no-fractures"]
    assert main(argv) == 0
    before = out.read_bytes(), (tmp_path / "p.json").read_bytes()
    capsys.readouterr()
    assert main([*argv, "--seed", "5"]) == 8
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("olvf-phantom: error: ") and "--force" in err
    assert (out.read_bytes(), (tmp_path / "p.json").read_bytes()) == before
    # Only the truth file in the way is enough to refuse, and nothing is written.
    out.unlink()
    assert main([*argv, "--seed", "5"]) == 8 and not out.exists()
    assert main([*argv, "--seed", "5", "--force"]) == 0
    assert out.read_bytes() != before[0]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("L6:fresh", "unknown level 'L6'"),
        ("L2:acute", "unknown class 'acute'"),
        ("L2", "expected LEVEL:CLASS"),
        ("L2:old:burst", "unknown deformity 'burst'"),
        ("l2:old", "unknown level 'l2'"),
    ],
)
def test_cli_bad_fracture_is_exit_3_and_one_line(tmp_path: Path, capsys, spec: str, message: str) -> None:
    out = tmp_path / "bad.dcm"
    assert main([str(out), "--fracture", spec, "--size", "512x512"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("olvf-phantom: error: ") and message in err
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_cli_as_a_process_reports_errors_without_traceback(tmp_path: Path) -> None:
    out = tmp_path / "twice.dcm"
    cmd = [sys.executable, "-m", "olvf.phantom.cli", str(out), "--fracture", "L2:fresh", "--fracture", "L2:old"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 3 and "Traceback" not in run.stderr
    assert run.stderr.strip() == "olvf-phantom: error: --fracture 'L2:old': L2 is given twice"


def test_monochrome1_reads_back_identical_to_monochrome2(tmp_path: Path) -> None:
    """Through the runtime's reader, the inverted file shows exactly the same image."""
    from olvf.runtime.inputs.reader import read_radiograph

    p = phantom(0, {})
    write_dicom(p, tmp_path / "m1.dcm", monochrome1=True)
    write_dicom(p, tmp_path / "m2.dcm")
    one, two = read_radiograph(tmp_path / "m1.dcm"), read_radiograph(tmp_path / "m2.dcm")
    assert one.info.inverted and not two.info.inverted
    np.testing.assert_allclose(one.pixels, two.pixels, atol=1e-6)
