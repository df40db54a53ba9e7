"""Detector decoding in numpy: both YOLO layouts, letterbox, NMS, levels and crop geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from olvf.runtime.bundle.config import CropSettings, DetectorSpec
from olvf.runtime.steps.crops import crop_regions, extract_crops
from olvf.runtime.steps.detection import Letterbox, candidates, letterbox, nms, postprocess

NAMES = ("vertebra",)


def spec(names: tuple[str, ...], layout: str) -> DetectorSpec:
    return DetectorSpec(input_size=(640, 640), stride=32, names=names, layout=layout)


def yolov8_output(boxes_xywh: list[list[float]], scores: list[list[float]], anchors: int = 50) -> np.ndarray:
    """(4 + nc, anchors) with the given boxes first and zero-score rows after."""
    nc = len(scores[0])
    raw = np.zeros((4 + nc, anchors), np.float32)
    for i, (box, score) in enumerate(zip(boxes_xywh, scores)):
        raw[:4, i] = box
        raw[4:, i] = score
    return raw


def test_yolov8_layout_decodes_to_hand_computed_boxes() -> None:
    raw = yolov8_output([[100, 50, 40, 20], [10, 10, 4, 4]], [[0.1, 0.9], [0.3, 0.2]])
    boxes, scores, classes = candidates(raw, "yolov8", 2, conf=0.25)
    np.testing.assert_allclose(boxes, [[80, 40, 120, 60], [8, 8, 12, 12]])
    np.testing.assert_allclose(scores, [0.9, 0.3])
    assert list(classes) == [1, 0]


def test_yolov5_layout_multiplies_objectness_and_class_score() -> None:
    raw = np.zeros((30, 5 + 2), np.float32)
    raw[0] = [100, 50, 40, 20, 0.5, 0.9, 0.1]  # 0.45 for class 0
    raw[1] = [10, 10, 4, 4, 0.2, 0.9, 0.9]  # 0.18: under the threshold
    boxes, scores, classes = candidates(raw, "yolov5", 2, conf=0.25)
    np.testing.assert_allclose(boxes, [[80, 40, 120, 60]])
    np.testing.assert_allclose(scores, [0.45], rtol=1e-6)
    assert list(classes) == [0]


def test_layout_and_class_count_must_agree() -> None:
    from olvf.errors import BundleError

    with pytest.raises(BundleError, match="layout"):
        candidates(np.zeros((7, 20), np.float32), "yolov8", 2, conf=0.25)


@pytest.mark.parametrize("shape", [(2500, 2000), (300, 900), (640, 640), (100, 50)])
def test_letterbox_matches_ultralytics_and_round_trips(shape: tuple[int, int]) -> None:
    from ultralytics.data.augment import LetterBox

    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    tensor, info = letterbox(image.astype(np.float32) / 255, (640, 640))  # the display scale
    theirs = LetterBox(new_shape=(640, 640), auto=False, scaleup=True)(image=np.stack([image] * 3, axis=2))
    assert tensor.shape == (3, 640, 640)
    assert np.abs(tensor[0] * 255 - theirs[:, :, 0].astype(np.float32)).max() <= 1.0
    boxes = np.array([[0, 0, shape[1], shape[0]], [10.5, 20.25, 40, 45]], np.float32)
    np.testing.assert_allclose(info.to_original(info.to_input(boxes)), boxes, atol=1e-3)


def test_boxes_map_back_to_original_pixels_and_are_clipped() -> None:
    info = Letterbox(gain=0.25, pad_x=0.0, pad_y=70.0, shape=(2000, 2560))
    out = info.to_original(np.array([[10, 80, 50, 120], [-5, 60, 700, 600]], np.float32))
    np.testing.assert_allclose(out[0], [40, 40, 200, 200])
    np.testing.assert_allclose(out[1], [0, 0, 2560, 2000])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.floats(0.1, 0.9), st.integers(0, 2**31 - 1), st.booleans())
def test_nms_matches_torchvision(count: int, iou: float, seed: int, per_class: bool) -> None:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (count, 2))
    wh = rng.uniform(1, 80, (count, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.permutation(count).astype(np.float32) / count + 0.01  # distinct: no tie-break ambiguity
    classes = rng.integers(0, 3, count)
    ours = nms(boxes, scores, iou, classes if per_class else None)
    tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
    if per_class:
        theirs = torchvision.ops.batched_nms(tb, ts, torch.from_numpy(classes), iou).numpy()
    else:
        theirs = torchvision.ops.nms(tb, ts, iou).numpy()
    assert list(ours) == list(theirs)


def _raw_from_original(boxes: list[list[float]], classes: list[int], scores: list[float], nc: int) -> tuple:
    """Build a yolov8 output for boxes given in original pixels of a 1000x800 image."""
    info = letterbox(np.zeros((1000, 800), np.uint8), (640, 640))[1]
    xyxy = info.to_input(np.array(boxes, np.float32))
    xywh = np.stack(
        [
            (xyxy[:, 0] + xyxy[:, 2]) / 2,
            (xyxy[:, 1] + xyxy[:, 3]) / 2,
            xyxy[:, 2] - xyxy[:, 0],
            xyxy[:, 3] - xyxy[:, 1],
        ],
        1,
    )
    one_hot = np.zeros((len(boxes), nc), np.float32)
    one_hot[np.arange(len(boxes)), classes] = scores
    return yolov8_output(xywh.tolist(), one_hot.tolist()), info


def test_five_bodies_become_l1_to_l5_top_to_bottom_with_duplicates_removed() -> None:
    bodies = [[300, 100 + 160 * i, 500, 230 + 160 * i] for i in range(5)]
    duplicate = [305, 104, 498, 228]  # a second, weaker box on L1
    raw, info = _raw_from_original(list(reversed(bodies)) + [duplicate], [0] * 6, [0.9, 0.8, 0.85, 0.95, 0.7, 0.5], 1)
    dets = postprocess(raw, info, spec(names=NAMES, layout="yolov8"))
    assert dets.levels == ("L1", "L2", "L3", "L4", "L5")
    np.testing.assert_allclose(dets.boxes, bodies, atol=0.01)
    assert "five bodies" in dets.level_rule


def test_other_counts_are_numbered_not_guessed() -> None:
    raw, info = _raw_from_original([[300, 100, 500, 230], [300, 300, 500, 420]], [0, 0], [0.9, 0.9], 1)
    dets = postprocess(raw, info, spec(names=NAMES, layout="yolov8"))
    assert dets.levels == ("V1", "V2") and "not five" in dets.level_rule
    nothing = postprocess(np.zeros((5, 40), np.float32), info, spec(names=NAMES, layout="yolov8"))
    assert len(nothing) == 0 and nothing.levels == ()


def test_per_level_detector_names_levels_and_keeps_one_box_per_level() -> None:
    names = ("T12", "L1", "L2", "L3", "L4", "L5")
    boxes = [[300, 100, 500, 230], [300, 300, 500, 420], [300, 600, 500, 720], [290, 590, 510, 730]]
    # L3 found twice on the same body as L3 (0.9) and L2 (0.6): one body cannot be two levels.
    raw, info = _raw_from_original(boxes, [1, 2, 3, 2], [0.9, 0.8, 0.9, 0.6], len(names))
    dets = postprocess(raw, info, spec(names=names, layout="yolov8"))
    assert dets.levels == ("L1", "L2", "L3")
    assert any("duplicate" in note for note in dets.notes)


def test_boxes_touching_the_border_are_clipped_not_lost() -> None:
    raw, info = _raw_from_original([[-30, 900, 150, 1040]], [0], [0.9], 1)
    dets = postprocess(raw, info, spec(names=NAMES, layout="yolov8"))
    np.testing.assert_allclose(dets.boxes, [[0, 900, 150, 1000]], atol=0.01)


def test_crops_are_the_original_pixels_made_square() -> None:
    image = np.arange(200 * 300, dtype=np.float32).reshape(200, 300)
    box = np.array([[100, 50, 160, 90]])  # 60 x 40
    (region,) = crop_regions(box, CropSettings(margin=0.0))
    assert region[2] - region[0] == region[3] - region[1] == 60
    (crop,) = extract_crops(image, box, CropSettings(margin=0.0))
    x1, y1, x2, y2 = region
    np.testing.assert_array_equal(crop, image[y1:y2, x1:x2])


def test_crops_past_the_border_repeat_the_edge() -> None:
    image = np.tile(np.arange(100, dtype=np.float32), (80, 1))
    (crop,) = extract_crops(image, np.array([[0, 0, 20, 20]]), CropSettings(margin=0.5))
    assert crop.shape == (40, 40)
    assert (crop[:, :10] == 0).all(), "left of the image repeats column 0"
    np.testing.assert_array_equal(crop[0, 10:], np.arange(30))


@pytest.mark.parametrize(
    "box", [[50, 50, 52, 51], [0, 0, 100, 80], [-10, -10, 120, 90]], ids=["tiny", "whole", "beyond"]
)
def test_tiny_and_huge_boxes_give_square_crops(box: list[int]) -> None:
    image = np.zeros((80, 100), np.uint8)
    (crop,) = extract_crops(image, np.array([box]), CropSettings())
    assert crop.shape[0] == crop.shape[1] >= 2
