"""The demo detector's training data: labels that are the phantom's truth, pixels that are what inference sees.

Training itself takes a quarter of an hour and is not run here; what it learns
from is checked instead, along with the committed weights' promises (plain
tensors, the documented recipe and hash).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dev_scripts import load_dev_script
from olvf.export.demo import DEMO_DETECTOR
from olvf.phantom import LEVELS, make_phantom, phantom_display, write_dicom
from olvf.runtime.inputs.reader import read_radiograph
from olvf.runtime.steps.detection import letterbox

training = load_dev_script("export/dev/train_demo_detector.py")
NAMES, Recipe = training.NAMES, training.Recipe
detector_image, sample_phantom = training.detector_image, training.sample_phantom
write_example, yolo_labels = training.write_example, training.yolo_labels

SMALL = (1250, 1000)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(7, {"L2": "fresh"}, SMALL)


def test_labels_are_the_truth_boxes_normalised(tmp_path: Path, phantom) -> None:
    label = write_example(phantom, tmp_path, "train", 320)
    rows = np.loadtxt(label, ndmin=2)
    assert [NAMES[int(c)] for c in rows[:, 0]] == list(LEVELS), "one line per level, class = level"
    height, width = phantom.size
    for (_, cx, cy, w, h), vertebra in zip(rows, phantom.levels):
        x1, y1, x2, y2 = vertebra.box
        # Six decimals in the file: within 5e-7 of the exact fractions.
        np.testing.assert_allclose(
            [cx, cy, w, h],
            [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height],
            atol=5.1e-7,
        )
    np.testing.assert_allclose(rows, yolo_labels(phantom), atol=5.1e-7)


def test_image_is_the_runtime_letterbox_content(tmp_path: Path, phantom) -> None:
    """Stored at the detector's scale, shrunk exactly as the runtime's letterbox shrinks the radiograph."""
    write_example(phantom, tmp_path, "val", 320)
    image = cv2.imread(str(tmp_path / "images" / "val" / f"{phantom.seed}.png"), cv2.IMREAD_UNCHANGED)
    assert image.dtype == np.uint8 and image.shape == (320, 256)
    tensor, box = letterbox(phantom_display(phantom), (320, 320))
    inside = tensor[0, :, int(box.pad_x) : int(box.pad_x) + 256] * 255.0
    assert np.abs(inside - image.astype(np.float32)).max() <= 0.5 + 1e-3  # uint8 rounding only


@pytest.mark.parametrize("monochrome1", [False, True], ids=["MONOCHROME2", "MONOCHROME1"])
def test_display_is_what_the_reader_makes_of_the_dicom(tmp_path: Path, phantom, monochrome1: bool) -> None:
    path = tmp_path / "p.dcm"
    write_dicom(phantom, path, monochrome1=monochrome1)
    read = read_radiograph(path).pixels
    # MONOCHROME1 inverts around the inverted centre, which shifts the window by one stored value: 1 / width.
    tolerance = 4e-6 + (1.0 / (phantom.window_width - 1) if monochrome1 else 0.0)
    assert np.abs(read - phantom_display(phantom)).max() <= tolerance


def test_samples_are_deterministic_and_varied() -> None:
    recipe = Recipe()
    sizes, fractured = set(), 0
    for seed in range(recipe.train_seeds[0], recipe.train_seeds[0] + 6):
        p = sample_phantom(seed, recipe)
        sizes.add(p.size)
        fractured += bool(p.fractures)
        assert recipe.rows_range[0] <= p.size[0] <= recipe.rows_range[1]
    assert len(sizes) == 6 and fractured >= 1
    a, b = sample_phantom(recipe.val_seeds[0]), sample_phantom(recipe.val_seeds[0])
    assert np.array_equal(a.pixels, b.pixels) and a.levels == b.levels
    assert np.array_equal(detector_image(a, 320), detector_image(b, 320))


def test_training_and_test_seeds_never_meet() -> None:
    recipe = Recipe()
    train, val = range(*recipe.train_seeds), range(*recipe.val_seeds)
    assert len(train) == recipe.train_count and len(val) == recipe.val_count
    assert not set(train) & set(val)
    assert min(train[0], val[0]) >= 1000, "the tests draw phantoms from small seeds"


# --------------------------------------------------------------------------- the committed weights


def test_committed_weights_are_plain_tensors_made_by_the_default_recipe() -> None:
    saved = torch.load(DEMO_DETECTOR, map_location="cpu", weights_only=True)  # no code runs
    assert saved["names"] == list(NAMES) and saved["yaml"] == Recipe().architecture and saved["imgsz"] == 320
    assert all(v.dtype in (torch.float16, torch.int64) for v in saved["state_dict"].values())
    # The documented command (the script's defaults) is the recipe that made the file.
    assert saved["recipe"] == json.loads(json.dumps(asdict(Recipe())))
    assert DEMO_DETECTOR.stat().st_size < 10e6
