"""A radiograph as the cascade takes it, and the checks every reader ends with.

One gray float32 image on the display scale [0, 1] and what was read (:class:`RadiographInfo`, no patient
identifiers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olvf.errors import InputError
from olvf.text import printable

MIN_SIDE = 64  # pixels; a lumbar vertebra spans far more on any real radiograph

BT601 = np.array([0.299, 0.587, 0.114])  # R, G, B


@dataclass(frozen=True)
class RadiographInfo:
    """What was read and how; no patient identifiers.

    ``window`` always has the keys ``source`` ("VOI LUT Sequence", "Window
    Center/Width", "percentile fallback" or "full range"), ``centre`` and
    ``width`` (in modality units; None for a LUT), ``function``,
    ``alternatives`` (how many the file offered; the first is used),
    ``explanation``, ``reason`` (why the fallback: "absent", "malformed: ...",
    "requested"), ``percentiles`` and ``lut``. Treat it as read-only.
    ``pixel_spacing_mm`` is (row, column) spacing; from ImagerPixelSpacing it is
    measured at the detector, not in the patient. ``sha256``: of the file's
    bytes, so that results can say which content they came from.
    ``patient_orientation``: Patient Orientation (0020,0020), row and column
    direction (e.g. ``("P", "F")``), when the file has it.
    ``sop_class_uid``, ``body_part_examined``, ``view_position`` and
    ``image_type`` are the header's own words on what the image is, for the
    intended-use check (:mod:`olvf.runtime.steps.applicability`); None where the
    file does not say (every non-DICOM image).
    """

    path: str
    kind: str  # "dicom" | "png" | "jpeg" | "tiff"
    sop_instance_uid: str | None
    modality: str | None
    rows: int
    columns: int
    bits_stored: int
    photometric_interpretation: str  # as stored; images get the DICOM term for their pixels
    inverted: bool
    window: dict[str, Any]
    pixel_spacing_mm: tuple[float, float] | None
    spacing_source: str | None  # "PixelSpacing" | "ImagerPixelSpacing" | None
    spacing_reason: str | None  # why there is no spacing: "missing" or "malformed ..."
    frames: int
    frame_used: int
    transfer_syntax: str | None
    notes: tuple[str, ...] = ()
    sha256: str | None = None
    patient_orientation: tuple[str, str] | None = None
    sop_class_uid: str | None = None
    body_part_examined: str | None = None
    view_position: str | None = None
    image_type: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous
class Radiograph:
    """``pixels``: float32 (H, W) in [0, 1], bright = dense, read-only."""

    pixels: np.ndarray
    info: RadiographInfo


# --- shared checks ------------------------------------------------------------


def require_not_blank(values: np.ndarray, path: Path) -> None:
    low, high = values.min(), values.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InputError(f"{printable(path)}: the pixel values are not finite numbers; export the image again")
    if low == high:
        raise InputError(
            f"{printable(path)}: blank image (every pixel is {low:g}); check that the right image was exported"
        )


def finish_display(pixels: np.ndarray, path: Path) -> np.ndarray:
    """The display image, read-only (a Radiograph is frozen, and callers share one array), checked once more.

    Whatever the route through the windows, an image with non-finite values or one gray
    everywhere gives no verdict worth having.
    """
    if not np.isfinite(pixels).all():
        raise InputError(
            f"{printable(path)}: the display conversion gives pixel values that are not finite numbers; "
            "the header's window or LUT is damaged, export the image again"
        )
    out = np.ascontiguousarray(pixels, dtype=np.float32)
    np.clip(out, 0.0, 1.0, out=out)
    if out.min() == out.max():
        raise InputError(
            f"{printable(path)}: the display conversion makes every pixel {float(out.min()):g} (no contrast); "
            "check that the right image was exported"
        )
    out.setflags(write=False)
    return out


def gray_image(image: np.ndarray) -> np.ndarray:
    """A caller's image as the stages take it: 2-D float32 on the display scale, finite."""
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 1:
        raise InputError(f"images must be 2-D grayscale arrays (H, W) on the display scale [0, 1], got {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"images must be float gray values in [0, 1] (the display scale), got {image.dtype}")
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise InputError("the image has NaN or infinite pixels")
    return image
