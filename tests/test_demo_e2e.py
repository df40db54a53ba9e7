"""End to end: ``olvf-export --demo`` with no input files, then phantom DICOM files through ``rt.infer``.

The demo bundle's detector was trained on phantoms (export/demo_detector.md);
here it must find the lumbar vertebrae of phantoms it never saw (other seeds),
stored as hospitals store radiographs: MONOCHROME2, MONOCHROME1, JPEG 2000
compressed, at the default matrix and a coarser one. The bundle is built once
per session through the CLI (about a minute on two cores).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

import olvf
from olvf.export.demo import DEMO_DETECTOR, DEMO_DETECTOR_NAME
from olvf.phantom import LEVELS, make_phantom, write_dicom
from olvf.runtime.detection import LUMBAR, box_iou

needs_ultralytics = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None,
    reason="the demo detector is built with ultralytics: pip install 'olvf[export]'",
)

RECORD = DEMO_DETECTOR.with_suffix(".md")
MIN_IOU = 0.5


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory) -> Path:
    from olvf.export.cli import main

    out = tmp_path_factory.mktemp("demo") / "bundle"
    assert main(["--demo", "--out", str(out)]) == 0
    return out


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
def test_demo_manifest_says_demo_and_names_the_committed_detector(demo_bundle: Path) -> None:
    manifest = json.loads((demo_bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["demo"] is True
    detector = manifest["detector"]
    assert detector["names"] == list(LEVELS) and detector["layout"] == "yolov8"
    assert detector["source"]["demo"] == DEMO_DETECTOR_NAME
    committed = hashlib.sha256(DEMO_DETECTOR.read_bytes()).hexdigest()
    assert detector["source"]["sha256"] == committed
    assert {g["role"] for g in manifest["graphs"]} >= {"ensemble", "detector"}
    # The detector passed the same parity gate as a user's checkpoint, on a phantom radiograph among its inputs.
    parity = manifest["parity"]["detector_fp32.onnx"]
    assert parity["min_matched_iou"] >= 0.99 and parity["boxes_per_image"][0][0] > 0


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
