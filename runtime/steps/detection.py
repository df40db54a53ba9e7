"""YOLO detector in numpy: letterbox, decode both output layouts, NMS, map boxes back.

Two families of YOLOv5 checkpoints reach users:

- ``yolov5`` (the original ultralytics/yolov5 repository's ``export.py``):
  output (N, A, 5 + nc) with rows ``cx, cy, w, h, objectness, class scores``;
  a box's score is objectness x class score. A = 25200 at 640.
- ``yolov8`` (the ``ultralytics`` package: YOLOv5u, YOLOv8 and later heads):
  output (N, 4 + nc, A), no objectness, transposed. A = 8400 at 640.

Both give boxes in the letterboxed input's pixels; the manifest says which
layout a bundle's detector has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from olvf.errors import BundleError
from olvf.runtime.bundle.config import LAYOUTS, LETTERBOX_GRAY, DetectorSpec
from olvf.vocabulary import DETECTOR_LEVELS


@dataclass(frozen=True)
class Letterbox:
    """How one image was fitted into the detector input: ``input = original * gain + pad``."""

    gain: float
    pad_x: float
    pad_y: float
    shape: tuple[int, int]

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (M, 4) xyxy in input pixels -> original pixels, clipped to the image."""
        out = boxes.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.gain
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.gain
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.shape[1])
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.shape[0])
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        out = boxes.astype(np.float32, copy=True)
        out[:, [0, 2]] = out[:, [0, 2]] * self.gain + self.pad_x
        out[:, [1, 3]] = out[:, [1, 3]] * self.gain + self.pad_y
        return out


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Fit a gray image (H, W) on the display scale [0, 1] into ``size`` (h, w) as ultralytics does.

    The aspect ratio is kept, the image is centred and the border is gray
    114/255; the result is (3, h, w) float32, the three channels identical.
    """
    height, width = image.shape[:2]
    gain = min(size[0] / height, size[1] / width)
    new_w, new_h = int(round(width * gain)), int(round(height * gain))
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    resized = (
        image
        if (new_h, new_w) == (height, width)
        else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    # The same rounding of the two halves of the padding as ultralytics' LetterBox.
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    canvas = np.full(size, LETTERBOX_GRAY, dtype=np.float32)
    canvas[top : top + new_h, left : left + new_w] = resized
    tensor = np.broadcast_to(canvas, (3, *size)).astype(np.float32)
    return tensor, Letterbox(gain=gain, pad_x=float(left), pad_y=float(top), shape=(height, width))


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    cx, cy, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def candidates(raw: np.ndarray, layout: str, num_classes: int, conf: float) -> tuple[np.ndarray, ...]:
    """One image's raw output -> (boxes xyxy, scores, class ids) above ``conf``."""
    if layout == "yolov8":
        if raw.shape[0] != 4 + num_classes:
            raise BundleError(
                f"detector output has {raw.shape[0]} rows; the yolov8 layout with "
                f"{num_classes} classes has {4 + num_classes}: class names and layout do not fit the graph"
            )
        rows = raw.T
        class_scores = rows[:, 4:]
    elif layout == "yolov5":
        if raw.shape[1] != 5 + num_classes:
            raise BundleError(
                f"detector output has {raw.shape[1]} columns; the yolov5 layout with "
                f"{num_classes} classes has {5 + num_classes}: class names and layout do not fit the graph"
            )
        rows = raw
        class_scores = rows[:, 5:] * rows[:, 4:5]
    else:
        raise BundleError(f"unknown detector layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), class_ids]
    keep = scores > conf
    return xywh_to_xyxy(rows[keep, :4]), scores[keep], class_ids[keep]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (M, 4) and (K, 4) xyxy boxes."""
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clip(0).prod(axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, class_ids: np.ndarray | None = None) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first; class-aware when ``class_ids`` given."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    if class_ids is not None:
        # Shift each class into its own region so boxes of different classes never overlap.
        span = float(np.abs(boxes).max()) + 1.0
        boxes = boxes + (class_ids.astype(np.float64) * 2 * span)[:, None]
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        if order.size == 1:
            break
        overlaps = box_iou(boxes[best : best + 1], boxes[order[1:]])[0]
        order = order[1:][overlaps <= iou]
    return np.asarray(keep, dtype=np.int64)


@dataclass(frozen=True)
class Detections:
    """Vertebral bodies found in one image, top to bottom, in original pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    levels: tuple[str, ...]
    level_rule: str
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.boxes)


def empty_detections(rule: str) -> Detections:
    return Detections(
        boxes=np.zeros((0, 4), np.float32),
        scores=np.zeros(0, np.float32),
        class_ids=np.zeros(0, np.int64),
        levels=(),
        level_rule=rule,
    )


LEVEL_NAMES = DETECTOR_LEVELS
LUMBAR = ("L1", "L2", "L3", "L4", "L5")


def per_level_names(names: tuple[str, ...]) -> bool:
    """Whether the detector was trained with one class per vertebral level."""
    return bool(names) and all(name.upper() in LEVEL_NAMES for name in names)


def postprocess(raw: np.ndarray, letterbox_info: Letterbox, settings: DetectorSpec) -> Detections:
    """One image's raw output -> vertebrae in original pixels, with levels, top to bottom."""
    boxes, scores, class_ids = candidates(raw, settings.layout, len(settings.names), settings.conf)
    keep = nms(boxes, scores, settings.iou, class_ids)
    boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
    notes: list[str] = []

    # One vertebral body cannot be two: drop boxes that overlap a better one of another class.
    keep = nms(boxes, scores, settings.duplicate_iou)
    if len(keep) < len(boxes):
        notes.append(f"{len(boxes) - len(keep)} overlapping duplicate(s) removed")
    boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]

    per_level = per_level_names(settings.names)
    if per_level:
        # A level can appear once: keep its best box (they are sorted best first).
        _, first = np.unique(class_ids, return_index=True)
        if len(first) < len(class_ids):
            notes.append(f"{len(class_ids) - len(first)} repeated level(s) dropped")
        first = np.sort(first)
        boxes, scores, class_ids = boxes[first], scores[first], class_ids[first]

    boxes, scores, class_ids = boxes[: settings.max_det], scores[: settings.max_det], class_ids[: settings.max_det]
    boxes = letterbox_info.to_original(boxes)
    big_enough = ((boxes[:, 2] - boxes[:, 0]) >= settings.min_size) & ((boxes[:, 3] - boxes[:, 1]) >= settings.min_size)
    boxes, scores, class_ids = boxes[big_enough], scores[big_enough], class_ids[big_enough]

    order = np.argsort((boxes[:, 1] + boxes[:, 3]) / 2, kind="stable")
    boxes, scores, class_ids = boxes[order], scores[order].astype(np.float32), class_ids[order].astype(np.int64)
    if per_level:
        levels = tuple(settings.names[i].upper() for i in class_ids)
        rule = "detector classes (one class per level)"
    elif len(boxes) == len(LUMBAR):
        levels, rule = LUMBAR, "order: five bodies found, taken as L1-L5 from the top"
    else:
        levels = tuple(f"V{i + 1}" for i in range(len(boxes)))
        rule = f"order: {len(boxes)} bodies found (not five), levels unknown, numbered V1.. from the top"
    return Detections(boxes.astype(np.float32), scores, class_ids, levels, rule, tuple(notes))
