"""How a bundle turns a radiograph into findings: every setting the manifest carries, defined once.

These frozen dataclasses are the manifest's sections (:mod:`olvf.runtime.manifest`
reads and writes them); the processing modules (reader, detection, crops,
preprocessing) take them as arguments and define no settings of their own.
This module imports only the standard library, so reading a manifest loads
neither pydicom nor OpenCV.

The gray scale
    Every stage works on one image convention, ``DISPLAY_RANGE``: float gray
    values in [0, 1], bright = dense, as the reader produces them after the
    DICOM display pipeline. It is torchvision's ``ToTensor`` convention (8-bit
    values divided by 255), which the classifiers were trained on before
    their mean/std normalisation, and ultralytics' detector input convention.
    So no stage rescales by hand; the ultralytics letterbox gray (114 of 255)
    is ``LETTERBOX_GRAY`` on this scale.

Invalid values raise ``ValueError`` naming the field; the manifest reader
turns that into a bundle error and the command lines into a usage error, so
a user's own ``--std 0,0,0`` is not blamed on a bundle.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DISPLAY_RANGE = (0.0, 1.0)
LETTERBOX_GRAY = 114 / 255  # ultralytics' letterbox border, on the display scale

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
WINDOW_MODES = ("dicom", "percentile")
LAYOUTS = ("yolov5", "yolov8")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_CONF = 0.25  # the detectors' usual operating threshold (ultralytics' and yolov5's predict default)
DEFAULT_IOU = 0.45  # yolov5's NMS default
DEFAULT_CROP_MARGIN = 0.1
DEFAULT_INPUT_SIZE = (224, 224)


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _in_range(name: str, value: Any, low: float, high: float) -> None:
    if not low <= _finite(name, value) <= high:
        raise ValueError(f"{name} must be within {low:g}..{high:g}, got {value!r}")


@dataclass(frozen=True)
class DisplayConversion:
    """How stored values become the [0, 1] gray image every stage works on.

    It belongs in the bundle manifest, so that inference converts exactly as
    the training data was converted.

    ``window``: ``"dicom"`` uses the file's VOI LUT Sequence, else its Window
    Center/Width, else the percentile fallback; ``"percentile"`` always uses
    the fallback. ``fallback_percentiles``: the values at these percentiles
    become 0 and 1. ``invert_monochrome1``: show MONOCHROME1 (bright = air)
    the MONOCHROME2 way; switch off only to match data prepared without it.
    """

    window: str = "dicom"
    fallback_percentiles: tuple[float, float] = (0.5, 99.5)
    invert_monochrome1: bool = True

    def __post_init__(self) -> None:
        if self.window not in WINDOW_MODES:
            raise ValueError(f"window must be one of {', '.join(WINDOW_MODES)}, got {self.window!r}")
        if len(self.fallback_percentiles) != 2:
            raise ValueError(f"fallback_percentiles must be (low, high), got {self.fallback_percentiles!r}")
        low, high = (_finite("fallback_percentiles", p) for p in self.fallback_percentiles)
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(
                f"fallback_percentiles must satisfy 0 <= low < high <= 100, got {self.fallback_percentiles!r}"
            )
        if not isinstance(self.invert_monochrome1, bool):  # "false" from a hand-edited file would be truthy
            raise ValueError(f"invert_monochrome1 must be true or false, got {self.invert_monochrome1!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "fallback_percentiles": [float(p) for p in self.fallback_percentiles],
            "invert_monochrome1": self.invert_monochrome1,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DisplayConversion:
        """Strict: a missing or unknown key would convert differently from training, silently."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(raw, Mapping) or set(raw) != names:
            got = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
            raise ValueError(f"display conversion must have exactly {sorted(names)}, got {got}")
        try:
            percentiles = tuple(float(p) for p in raw["fallback_percentiles"])
        except (TypeError, ValueError):
            raise ValueError(f"fallback_percentiles must be two numbers, got {raw['fallback_percentiles']!r}") from None
        return cls(raw["window"], percentiles, raw["invert_monochrome1"])  # type: ignore[arg-type]


@dataclass(frozen=True)
class CropSettings:
    """How a detector box becomes a classifier crop.

    The box grows by ``margin`` of its size on every side, then its shorter
    side grows to the longer one around the same centre (``square``), so the
    vertebra is not distorted. Parts outside the image repeat its edge.
    """

    margin: float = DEFAULT_CROP_MARGIN
    square: bool = True

    def __post_init__(self) -> None:
        # A negative margin would cut into the body (at -0.5 a box collapses to a pixel).
        _in_range("crops.margin", self.margin, 0.0, 1.0)
        if not isinstance(self.square, bool):
            raise ValueError(f"crops.square must be true or false, got {self.square!r}")


@dataclass(frozen=True)
class Preprocessing:
    """How a gray crop on the display scale becomes the classifiers' input.

    The crop is resized to ``input_size`` with ``interpolation``, replicated to
    three channels (``channels == "gray_to_rgb"``), then normalised per
    channel: ``(value - mean) / std``, the values being in ``DISPLAY_RANGE``.
    """

    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    channels: str = "gray_to_rgb"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"unknown interpolation {self.interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}"
            )
        if self.channels != "gray_to_rgb":
            raise ValueError(f"unknown channel handling {self.channels!r}; expected gray_to_rgb")
        if len(self.input_size) != 2 or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 32 for s in self.input_size
        ):
            raise ValueError(f"input size {self.input_size} must be (H, W), whole numbers each >= 32")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std must have three values (R, G, B)")
        for value in self.mean:
            _finite("mean", value)
        if any(_finite("std", s) <= 0 for s in self.std):
            raise ValueError(f"std values must be positive, got {list(self.std)}")


@dataclass(frozen=True)
class DetectorSpec:
    """The vertebra detector: its input, classes, output layout and everything that decodes its output.

    ``conf``: score a box needs; ``iou``: class-aware NMS overlap; ``duplicate_iou``:
    boxes of different classes overlapping a better one this much are the same
    body; ``max_det``: boxes kept per image; ``min_size``: smallest box side in
    original pixels (smaller ones are noise, not a vertebral body).
    """

    input_size: tuple[int, int]
    stride: int
    names: tuple[str, ...]
    layout: str
    conf: float = DEFAULT_CONF
    iou: float = DEFAULT_IOU
    duplicate_iou: float = 0.6
    max_det: int = 20
    min_size: float = 4.0
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown detector layout {self.layout!r}; expected one of {', '.join(LAYOUTS)}")
        if not self.names or not all(isinstance(n, str) and n for n in self.names):
            raise ValueError("the detector has no class names")
        for name in ("stride", "max_det"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"detector {name} must be a whole number >= 1, got {value!r}")
        if len(self.input_size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in self.input_size):
            raise ValueError(f"detector input size {self.input_size} must be two whole numbers")
        if any(s < self.stride or s % self.stride for s in self.input_size):
            raise ValueError(f"detector input {self.input_size} is not a multiple of stride {self.stride}")
        for name in ("conf", "iou", "duplicate_iou"):
            _in_range(f"detector {name}", getattr(self, name), 0.0, 1.0)
        _in_range("detector min_size", self.min_size, 0.0, 1e6)
