"""End to end: ``olvf-export --demo`` with no input files, then phantom DICOM files through ``rt.infer``.

The demo bundle's detector and classifier heads were trained on phantoms
(export/demo_detector.md, export/demo_classifiers.md); here they must find
the lumbar vertebrae of phantoms they never saw (other seeds), stored as
hospitals store radiographs: MONOCHROME2, MONOCHROME1, JPEG 2000 compressed,
at the default matrix and a coarser one, and tell fractured from normal and
fresh from old. The README's Quick start is run as written. The bundle is
built once per session through the CLI (about a minute on two cores).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import olvf
from olvf.export.demo import DEMO_CLASSIFIERS, DEMO_CLASSIFIERS_NAME, DEMO_DETECTOR, DEMO_DETECTOR_NAME
from olvf.phantom import CLASSES, LEVELS, make_phantom, write_dicom
from olvf.runtime.steps.detection import LUMBAR, box_iou

needs_ultralytics = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None,
    reason="the demo detector is built with ultralytics: pip install 'olvf[export]'",
)

RECORD = DEMO_DETECTOR.with_suffix(".md")
MIN_IOU = 0.5
# Where a fracture's Grad-CAM should peak: on the deformed endplate or a wall (the report's regions).
ENDPLATE_OR_WALL = {"upper_endplate", "lower_endplate", "anterior", "posterior"}


@pytest.fixture(scope="module")
def demo_runtime(demo_bundle):
    with olvf.load(demo_bundle) as rt:
        yield rt


# seed, fractures (None: the seed chooses), matrix, how the file is stored
CASES = {
    "seed0-normal": (0, {}, (2500, 2000), {}),
    "seed1-L1-fresh": (1, {"L1": "fresh"}, (2500, 2000), {}),
    "seed2-L3-old-L4-fresh": (2, {"L3": "old", "L4": "fresh"}, (2500, 2000), {}),
    "seed3-monochrome1": (3, None, (2500, 2000), {"monochrome1": True}),
    "seed4-jpeg2000-L2-fresh": (4, {"L2": "fresh"}, (2500, 2000), {"jpeg2000": True}),
    "seed5-monochrome1-jpeg2000": (5, {"L5": "old"}, (2500, 2000), {"monochrome1": True, "jpeg2000": True}),
    "seed6-coarse-1250x1000": (6, None, (1250, 1000), {}),
}


def _matches(result, phantom) -> dict[str, float]:
    """Each true level -> IoU of the detection carrying that level's name (0 when none does)."""
    found = {}
    for vertebra in phantom.levels:
        named = [i for i, level in enumerate(result.detections.levels) if level == vertebra.level]
        if named:
            truth = np.asarray([vertebra.box], np.float32)
            found[vertebra.level] = float(box_iou(truth, result.detections.boxes[named]).max())
        else:
            found[vertebra.level] = 0.0
    return found


@pytest.mark.slow
@needs_ultralytics
@pytest.mark.parametrize("case", list(CASES))
def test_demo_bundle_finds_and_names_the_lumbar_levels(demo_runtime, tmp_path: Path, case: str) -> None:
    seed, fractures, size, storage = CASES[case]
    phantom = make_phantom(seed, fractures, size)
    path = tmp_path / f"{case}.dcm"
    write_dicom(phantom, path, **storage)

    result = demo_runtime.infer(path)

    ious = _matches(result, phantom)
    figures = ", ".join(f"{level} {iou:.2f}" for level, iou in ious.items())
    lumbar_found = [level for level in LUMBAR if ious[level] >= MIN_IOU]
    assert len(lumbar_found) >= 4, f"{case}: lumbar levels found with IoU >= {MIN_IOU}: {lumbar_found} ({figures})"
    # Named in anatomical order from the top, each level at most once.
    levels = [level for level in result.detections.levels if level in LEVELS]
    assert levels == sorted(levels, key=LEVELS.index) and len(set(levels)) == len(levels), levels
    assert result.detections.level_rule.startswith("detector classes")
    # Every vertebra found went through the demo classifiers.
    assert len(result.classification) == len(result.detections)
    print(f"{case}: {figures}")


@pytest.mark.slow
@needs_ultralytics
def test_demo_fp16_graph_keeps_the_fp32_decisions(demo_bundle: Path, demo_runtime, tmp_path: Path) -> None:
    """What a GPU runs (the FP16 graph) calls each vertebra as the FP32 graph does, on every case above."""
    with olvf.load(demo_bundle, backend="onnxruntime", precision="fp16") as half:
        for case, (seed, fractures, size, storage) in CASES.items():
            path = tmp_path / f"{case}.dcm"
            write_dicom(make_phantom(seed, fractures, size), path, **storage)
            full, rounded = demo_runtime.infer(path), half.infer(path)
            assert rounded.detections.levels == full.detections.levels, case
            assert rounded.classification.labels == full.classification.labels, case
            # The FP16 detector moves boxes by a pixel or so, so crops and probabilities move a little; the MRI
            # call at the operating point must not.
            fresh = full.classification.classes.index("fresh")
            point = json.loads((demo_bundle / "manifest.json").read_text(encoding="utf-8"))["operating_points"]["fresh"]
            calls = [r.classification.probabilities[:, fresh] >= point for r in (full, rounded)]
            assert (calls[0] == calls[1]).all(), f"{case}: FP16 changed an MRI call"


@pytest.mark.slow
@needs_ultralytics
def test_demo_manifest_says_demo_and_names_the_committed_detector(demo_bundle: Path) -> None:
    manifest = json.loads((demo_bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["demo"] is True
    detector = manifest["detector"]
    assert detector["names"] == list(LEVELS) and detector["layout"] == "yolov8"
    assert detector["source"]["demo"] == DEMO_DETECTOR_NAME
    committed = hashlib.sha256(DEMO_DETECTOR.read_bytes()).hexdigest()
    assert detector["source"]["sha256"] == committed
    assert {g["role"] for g in manifest["graphs"]} >= {"ensemble", "detector"}
    # The classifiers: seeded backbones with the committed heads, and the operating point chosen with them.
    committed_heads = hashlib.sha256(DEMO_CLASSIFIERS.read_bytes()).hexdigest()
    for model in manifest["models"]:
        assert model["source"]["demo_weights"] == DEMO_CLASSIFIERS_NAME
        assert model["source"]["sha256"] == committed_heads and "not for diagnosis" in model["source"]["note"]
    stored = torch.load(DEMO_CLASSIFIERS, map_location="cpu", weights_only=True)["operating_points"]["fresh"]
    assert manifest["operating_points"] == {"fresh": stored}
    # The detector passed the same parity gate as a user's checkpoint, on a phantom radiograph among its inputs.
    parity = manifest["parity"]["detector_fp32.onnx"]
    assert parity["min_matched_iou"] >= 0.99 and parity["boxes_per_image"][0][0] > 0


def _console(name: str):
    """An installed command's ``main``, as the README runs it (wherever the package keeps it)."""
    from importlib.metadata import entry_points

    return entry_points(group="console_scripts")[name].load()


@pytest.mark.slow
@needs_ultralytics
def test_quick_start_finds_the_fresh_l2_and_recommends_mri(demo_bundle: Path, tmp_path: Path, capsys) -> None:
    """The README's first command: olvf-phantom --seed 1 --fracture L2:fresh, then olvf-infer on the demo."""
    film = tmp_path / "phantom.dcm"
    assert _console("olvf-phantom")([str(film), "--seed", "1", "--fracture", "L2:fresh"]) == 0
    capsys.readouterr()
    out = tmp_path / "olvf-out"
    assert _console("olvf-infer")(["--bundle", str(demo_bundle), "--out", str(out), "--json", str(film)]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    report = entry["report"]
    calls = {v["level"]: v["prediction"] for v in report["vertebrae"]}
    assert calls == {"T12": "normal", "L1": "normal", "L2": "fresh", "L3": "normal", "L4": "normal", "L5": "normal"}
    assert report["mri_recommended"] is True and report["mri_levels"] == ["L2"], report["mri_reason"]
    l2 = next(v for v in report["vertebrae"] if v["level"] == "L2")
    assert l2["gradcam"]["target"] == "fresh" and l2["gradcam"]["peak_region"] in ENDPLATE_OR_WALL, l2["gradcam"]
    assert "trained on synthetic phantoms only" in report["warning"] and "not for diagnosis" in report["warning"]


# Seeds the demo classifiers never saw (they were trained on 400000+, export/demo_classifiers.md); one fresh and
# one old fracture each, at levels that move along the spine; a matrix inside the training range.
HELD_OUT = range(40, 52)
HELD_OUT_SIZE = (1600, 1300)


def _held_out(seed: int):
    i = seed - HELD_OUT.start
    return make_phantom(seed, {LEVELS[i % 6]: "fresh", LEVELS[(i + 3) % 6]: "old"}, HELD_OUT_SIZE)


@pytest.mark.slow
@needs_ultralytics
def test_demo_separates_fractured_from_normal_and_fresh_from_old(demo_runtime, tmp_path: Path) -> None:
    """Held-out phantoms through the whole cascade; a missed vertebra counts as normal with p = 0."""
    metrics = pytest.importorskip("sklearn.metrics")
    phantoms = [_held_out(seed) for seed in HELD_OUT]
    paths = []
    for phantom in phantoms:
        paths.append(tmp_path / f"{phantom.seed}.dcm")
        write_dicom(phantom, paths[-1])
    truth, probabilities, peaks = [], [], []
    for phantom, result in zip(phantoms, demo_runtime.infer_many(paths)):
        for vertebra in phantom.levels:
            truth.append(CLASSES.index(vertebra.label))
            found = [i for i, level in enumerate(result.detections.levels) if level == vertebra.level]
            probabilities.append(result.classification.probabilities[found[0]] if found else [1.0, 0.0, 0.0])
            if found and vertebra.label == "fresh" and result.classification.labels[found[0]] == "fresh":
                peaks.append(_peak_region(demo_runtime, result, found[0]))
    y, p = np.asarray(truth), np.asarray(probabilities)
    fracture_auc = metrics.roc_auc_score(y > 0, 1 - p[:, 0])
    fresh_auc = metrics.roc_auc_score(y == 2, p[:, 2])
    fresh_vs_old = metrics.roc_auc_score(y[y > 0] == 2, p[y > 0, 2])
    threshold = demo_runtime.manifest.operating_points["fresh"]
    called = p[:, 2] >= threshold
    sensitivity, specificity = called[y == 2].mean(), (~called[y != 2]).mean()
    figures = (
        f"fracture AUC {fracture_auc:.3f}, fresh AUC {fresh_auc:.3f}, fresh vs old AUC {fresh_vs_old:.3f}, "
        f"at p(fresh) >= {threshold}: sensitivity {sensitivity:.2f}, specificity {specificity:.2f}; peaks {peaks}"
    )
    print(figures)
    assert fracture_auc > 0.95 and fresh_auc > 0.95 and fresh_vs_old > 0.9, figures
    assert sensitivity >= 10 / 12 and specificity >= 0.85, figures
    assert sum(region in ENDPLATE_OR_WALL for region in peaks) >= 0.75 * len(peaks) > 0, figures


def _peak_region(rt, result, index: int) -> str:
    return result.cam_regions.peak_regions[index]


def test_committed_weights_match_their_record() -> None:
    """export/demo_detector.md states the SHA-256 of the weights it describes."""
    documented = re.search(r"SHA-256 \| `([0-9a-f]{64})`", RECORD.read_text(encoding="utf-8"))
    assert documented, f"{RECORD.name} must state the weights' SHA-256"
    assert hashlib.sha256(DEMO_DETECTOR.read_bytes()).hexdigest() == documented.group(1)


def test_demo_without_ultralytics_says_what_to_install(tmp_path: Path, monkeypatch, capsys) -> None:
    from olvf.export import demo
    from olvf.export.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        demo.importlib.util, "find_spec", lambda name, *a: None if name == "ultralytics" else real(name, *a)
    )
    assert main(["--demo", "--out", str(tmp_path / "bundle")]) == 7
    err = capsys.readouterr().err
    assert "Traceback" not in err and "pip install 'olvf[export]'" in err and "ultralytics" in err
    assert not (tmp_path / "bundle").exists()


def _state_of_outline(image: np.ndarray, overlay: dict, box: list[float]) -> tuple[int, int, int]:
    """The colour of a box's outline on the overlay, read 2 px outside its left edge at mid-height (BGR)."""
    scale, top = overlay["scale"], overlay["offset"][1]
    x = int(np.ceil(box[0] * scale - 0.5)) - 2
    y = int((box[1] + box[3]) / 2 * scale) + top
    return tuple(int(v) for v in image[y, x])


@pytest.mark.slow
@needs_ultralytics
def test_what_the_physician_sees_says_what_olvf_decided(demo_bundle: Path, tmp_path: Path, capsys) -> None:
    """Held-out phantoms (olvf-phantom --set held-out from seed 5000) through olvf-infer --dicom: every vertebra at
    or over the operating point is drawn in the one colour no other box has, labelled with its p(fresh), and the
    summary names exactly the report's mri_levels. Phantom 5017 is where L3 (p(fresh) 0.49 over 0.31, top class
    normal) was drawn as "L3 normal 0.50" in green while the MRI went to L3 and L4."""
    import cv2

    from olvf.phantom.sets import plan_study
    from olvf.runtime.writers.overlay import STATE_COLOURS

    films = []
    for seed in (5017, 5001, 5006):
        study = plan_study(seed)
        phantom = make_phantom(seed, dict(study.fractures), deformities=dict(study.deformities))
        films.append(tmp_path / f"phantom-{seed}.dcm")
        write_dicom(phantom, films[-1], monochrome1=study.monochrome1, jpeg2000=study.jpeg2000)
    out = tmp_path / "out"
    capsys.readouterr()
    code = _console("olvf-infer")(["--bundle", str(demo_bundle), "--out", str(out), "--dicom", *map(str, films)])
    summary = capsys.readouterr().out
    assert code == 0, summary
    fresh_colour = STATE_COLOURS["suspected fresh"]
    suspected_somewhere = False
    for film in films:
        folder = out / film.stem
        report = json.loads((folder / "report.json").read_text())
        threshold = report["operating_point"]["fresh"]
        image = cv2.imread(str(folder / "overlay.png"), cv2.IMREAD_COLOR)
        over = [v["level"] for v in report["vertebrae"] if v["probabilities"]["fresh"] >= threshold]
        assert report["mri_levels"] == over
        for v in report["vertebrae"]:
            suspected = v["probabilities"]["fresh"] >= threshold
            assert (v["shown_as"] == "suspected fresh") == suspected, v
            colour = _state_of_outline(image, report["overlay"], v["box"])
            assert (colour == fresh_colour) == suspected, (film.stem, v["level"], colour)
            assert colour == STATE_COLOURS[v["shown_as"]], (film.stem, v["level"], colour)
            suspected_somewhere |= suspected
        # The summary's verdict line for this study names exactly the MRI levels, each with its p(fresh).
        block = summary.split(f"{film}  ->")[1].split("->")[0]
        verdict = next(line for line in block.splitlines() if "MRI" in line)
        named = re.findall(r"\b(T12|L[1-5]) \(p\(fresh\)", verdict)
        assert named == report["mri_levels"], verdict
        if film.stem == "phantom-5017":
            l3 = next(v for v in report["vertebrae"] if v["level"] == "L3")
            assert l3["shown_as"] == "suspected fresh" and l3["gradcam"]["target"] == "fresh", l3
            assert "L3" in report["mri_levels"], report["mri_reason"]
        # The heat map PNGs say which class they show, and the SR and SC exist beside them.
        assert (folder / "olvf_sr.dcm").is_file() and (folder / "olvf_sc.dcm").is_file()
    assert suspected_somewhere, "the held-out phantoms hold a suspected fresh fracture"
