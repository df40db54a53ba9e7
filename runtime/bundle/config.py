"""How a bundle turns a radiograph into findings: every setting the manifest carries, defined once.

These frozen dataclasses are the manifest's sections (:mod:`olvf.runtime.bundle.manifest`
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


# DICOM SOP classes of projection radiographs (PS3.4 B.5)
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"


@dataclass(frozen=True)
class AnatomyRules:
    """What the detector's boxes must look like for the film to be a lateral lumbar column (see
    :mod:`olvf.runtime.steps.applicability`). Ratios are of box sizes in pixels; the ``*_mm`` ranges apply where the
    file gives its pixel spacing."""

    #: vertebral bodies found, in a craniocaudal run (a lateral lumbar film shows T12-L5: six)
    min_levels: int = 3
    #: levels a run may skip (a crushed body the detector missed) before it counts as two columns
    max_missing_levels: int = 1
    #: each body's width / height (anteroposterior depth over height on a lateral film)
    aspect: tuple[float, float] = (0.75, 2.4)
    #: largest / smallest box width, and height, among the bodies of one film
    max_width_ratio: float = 1.8
    max_height_ratio: float = 2.6
    #: body height and width in mm
    height_mm: tuple[float, float] = (10.0, 60.0)
    width_mm: tuple[float, float] = (18.0, 80.0)
    #: centre-to-centre distance per level, in median body heights
    step: tuple[float, float] = (0.7, 2.4)
    #: largest distance of a centre from the smooth curve through them all, in median body widths
    max_curve_offset: float = 0.5
    #: the column's angle from the image's vertical (a lateral lumbar film is taken upright)
    max_tilt_degrees: float = 35.0
    #: largest intersection-over-union of two bodies (one body is not two)
    max_overlap: float = 0.2

    def __post_init__(self) -> None:
        if self.min_levels < 2:
            raise ValueError(f"anatomy.min_levels must be at least 2, got {self.min_levels}")
        for name in ("aspect", "height_mm", "width_mm", "step"):
            low, high = (_finite(f"anatomy.{name}", v) for v in getattr(self, name))
            if not 0 < low < high:
                raise ValueError(f"anatomy.{name} must be two numbers 0 < low < high, got {getattr(self, name)!r}")
            object.__setattr__(self, name, (low, high))
        for name in ("max_width_ratio", "max_height_ratio"):
            _in_range(f"anatomy.{name}", getattr(self, name), 1.0, 100.0)
        _in_range("anatomy.max_curve_offset", self.max_curve_offset, 0.0, 10.0)
        _in_range("anatomy.max_tilt_degrees", self.max_tilt_degrees, 0.0, 90.0)
        _in_range("anatomy.max_overlap", self.max_overlap, 0.0, 1.0)


@dataclass(frozen=True)
class IntendedUse:
    """The images a bundle is for. A header value outside these lists means "not assessed", naming the element;
    a value that is absent is no pass (the anatomy and domain checks look at the pixels). Values compare
    case-insensitively, ignoring spaces, hyphens and underscores (``L-SPINE`` is ``LSPINE``).

    The defaults are the study's: CR and DX lateral radiographs of the lumbar or thoracolumbar spine, as the
    modality made them (``ORIGINAL``/``PRIMARY``; a ``DERIVED`` or ``SECONDARY`` image, olvf's own Secondary
    Capture among them, is refused).
    """

    description: str = "lateral radiographs of the lumbar or thoracolumbar spine (CR or DX), original images"
    modalities: tuple[str, ...] = ("CR", "DX")
    sop_classes: tuple[str, ...] = (CR_IMAGE_STORAGE, DX_FOR_PRESENTATION, DX_FOR_PROCESSING)
    body_parts: tuple[str, ...] = ("LSPINE", "TLSPINE", "SPINE", "LUMBAR", "LUMBARSPINE", "THORACOLUMBAR")
    views: tuple[str, ...] = ("LL", "RL", "LATERAL", "LAT")
    #: Image Type value 1 (pixel data characteristics) and value 2 (patient examination characteristics)
    image_type_values: tuple[tuple[str, ...], tuple[str, ...]] = (("ORIGINAL",), ("PRIMARY",))
    anatomy: AnatomyRules = field(default_factory=AnatomyRules)

    def __post_init__(self) -> None:
        for name in ("modalities", "sop_classes", "body_parts", "views"):
            values = getattr(self, name)
            if isinstance(values, str) or not all(isinstance(v, str) and v.strip() for v in values):
                raise ValueError(f"intended_use.{name} must be a list of non-empty strings, got {values!r}")
            object.__setattr__(self, name, tuple(values))
        if not self.modalities or not self.sop_classes:
            raise ValueError("intended_use must name at least one modality and one SOP class")
        first, second = self.image_type_values
        object.__setattr__(self, "image_type_values", (tuple(first), tuple(second)))

    def to_dict(self) -> dict[str, Any]:
        return json_ready(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> IntendedUse:
        """Strict about names (a misspelt key would silently keep a default); missing keys keep the default."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"intended_use must be an object, got {type(raw).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"intended_use: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        values = dict(raw)
        if "anatomy" in values:
            anatomy = values["anatomy"]
            known = {f.name for f in dataclasses.fields(AnatomyRules)}
            if not isinstance(anatomy, Mapping) or set(anatomy) - known:
                bad = sorted(set(anatomy) - known) if isinstance(anatomy, Mapping) else type(anatomy).__name__
                raise ValueError(f"intended_use.anatomy: unknown key(s) {bad}; known: {', '.join(sorted(known))}")
            rules: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in anatomy.items()}
            values["anatomy"] = AnatomyRules(**rules)
        if "image_type_values" in values:
            pair = values["image_type_values"]
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ValueError("intended_use.image_type_values must be two lists (value 1, value 2)")
            values["image_type_values"] = (tuple(pair[0]), tuple(pair[1]))
        for name in ("modalities", "sop_classes", "body_parts", "views"):
            if name in values and isinstance(values[name], list):
                values[name] = tuple(values[name])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"intended_use: {exc}") from None


def json_ready(settings: Any) -> Any:
    """A settings dataclass as JSON's shapes (lists, not tuples)."""
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return {f.name: json_ready(getattr(settings, f.name)) for f in dataclasses.fields(settings)}
    if isinstance(settings, tuple | list):
        return [json_ready(v) for v in settings]
    return settings
