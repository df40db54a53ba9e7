"""What a phantom is made of: the levels drawn, each body's size, the fractures a seed chooses, the scene."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from olvf.errors import InputError
from olvf.vocabulary import FRACTURE_CLASSES, LEVELS

DEFORMITIES: tuple[str, ...] = ("wedge", "biconcave", "crush")
ANTERIOR = "left"
PATIENT_ORIENTATION = ("P", "F")  # row direction posterior, column direction feet
MAX_VALUE = 4095  # 12 bits stored
SIZE_LIMITS = (256, 6144)  # rows and columns each
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"

_DRAWN = ("T8", "T9", "T10", "T11", *LEVELS, "S1")

# Mean body size per level in image millimetres (detector plane, magnification
# included): AP width, posterior wall height, anterior/posterior height ratio.
# T12-L1 are slightly wedged (thoracolumbar kyphosis), L5 taller in front.
_BODY = {
    "T8": (28.0, 20.5, 0.93),
    "T9": (29.5, 21.5, 0.93),
    "T10": (31.0, 22.5, 0.93),
    "T11": (33.0, 23.5, 0.94),
    "T12": (35.0, 25.0, 0.95),
    "L1": (37.0, 26.5, 0.97),
    "L2": (39.0, 27.5, 0.97),
    "L3": (41.0, 28.0, 1.00),
    "L4": (43.0, 27.5, 1.03),
    "L5": (44.0, 26.0, 1.12),
    "S1": (45.0, 28.0, 1.00),
}
# The disc below each level: mid height (mm) and wedge angle (degrees, positive
# = taller in front = lordotic). Lordosis lives mostly in the lower discs.
_DISC = {
    "T8": (5.0, -1.5),
    "T9": (5.0, -1.5),
    "T10": (5.5, -1.0),
    "T11": (6.0, -1.0),
    "T12": (7.0, 0.0),
    "L1": (8.5, 5.0),
    "L2": (9.5, 7.0),
    "L3": (10.5, 9.5),
    "L4": (11.0, 12.0),
    "L5": (10.0, 14.0),
}
_RANDOM_FRACTURE_P = 0.12  # per level, when the seed chooses fractures
_DEFORMITY_P = (0.5, 0.25, 0.25)  # wedge, biconcave, crush: wedges are the most common
_HEIGHT_LOSS = (0.25, 0.40)  # Genant grade 2


@dataclass(frozen=True)
class Vertebra:
    """Ground truth for one vertebral body.

    ``label`` is "normal", "old" or "fresh"; ``deformity`` is "wedge",
    "biconcave" or "crush" for a fracture and None otherwise;
    ``height_loss`` is the Genant height reduction drawn (0 when normal);
    ``heights_mm`` are the anterior, middle and posterior heights of the body
    as drawn.
    """

    level: str
    box: tuple[int, int, int, int]
    label: str = "normal"
    deformity: str | None = None
    height_loss: float = 0.0
    heights_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "box": list(self.box),
            "class": self.label,
            "deformity": self.deformity,
            "height_loss": round(self.height_loss, 4),
            "heights_mm": dict(zip(("anterior", "middle", "posterior"), (round(h, 2) for h in self.heights_mm))),
        }


@dataclass(frozen=True, eq=False)  # eq would compare pixel arrays element-wise
class Phantom:
    """A phantom radiograph and its truth. ``pixels`` is read-only uint16, 0..4095, bone bright."""

    pixels: np.ndarray
    levels: tuple[Vertebra, ...]
    context: tuple[Vertebra, ...]
    pixel_spacing_mm: float
    seed: int
    window_center: int
    window_width: int
    anterior: str = ANTERIOR

    @property
    def size(self) -> tuple[int, int]:
        rows, cols = self.pixels.shape
        return int(rows), int(cols)

    @property
    def fractures(self) -> dict[str, str]:
        return {v.level: v.label for v in self.levels if v.label != "normal"}


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class _Fracture:
    label: str
    deformity: str
    loss: float
    step_mm: float  # anterior cortical step (fresh only)
    band_mm: float  # depth of the condensation band under the endplate


@dataclass(frozen=True)
class _Body:
    name: str
    width: float
    height: float  # posterior wall height before any fracture
    ratio: float  # anterior / posterior height before any fracture
    concavity: float  # endplate concavity at the centre, mm
    waist: float  # anterior wall concavity, mm
    density: float  # trabecular density relative to the image's bone density
    fracture: _Fracture | None


@dataclass(frozen=True)
class _Scene:
    seed: int
    rows: int
    cols: int
    spacing: float  # mm per pixel
    bodies: tuple[_Body, ...]  # T8 .. S1
    discs: tuple[tuple[float, float], ...]  # below each body but S1: (mid mm, wedge degrees)
    sacral_slope: float  # degrees
    tilt: float  # degrees, patient positioning
    anchor: tuple[float, float]  # L3 centre as fractions of (cols, rows)
    bone: float  # overall bone density
    cortex: float  # cortical brightness
    contrast: float
    brightness: float
    noise: float
    sharpen: float
    equalise: float


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """An independent stream per purpose, so changing one choice leaves the others alone."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _validate(
    seed: int, fractures: Mapping[str, str] | None, deformities: Mapping[str, str] | None, size: tuple[int, int]
) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, not {seed!r}")
    if len(size) != 2 or not all(isinstance(n, (int, np.integer)) for n in size):
        raise InputError(f"size must be (rows, columns) in pixels, not {size!r}")
    lo, hi = SIZE_LIMITS
    if not all(lo <= n <= hi for n in size):
        raise InputError(f"size {size[0]}x{size[1]} is out of range; rows and columns must be {lo}..{hi}")
    valid = ", ".join(LEVELS)
    for level, label in (fractures or {}).items():
        if level not in LEVELS:
            raise InputError(f"unknown level {level!r} in fractures; use one of {valid}")
        if label not in FRACTURE_CLASSES:
            raise InputError(
                f"unknown fracture class {label!r} for {level}; use old or fresh (unlisted levels are normal)"
            )
    for level, kind in (deformities or {}).items():
        if level not in LEVELS:
            raise InputError(f"unknown level {level!r} in deformities; use one of {valid}")
        if kind not in DEFORMITIES:
            raise InputError(f"unknown deformity {kind!r} for {level}; use one of {', '.join(DEFORMITIES)}")
        if fractures is None or level not in fractures:
            raise InputError(
                f"a deformity is given for {level} but no fracture class; add {level}:old or {level}:fresh"
            )


def _choose_fractures(seed: int, fractures: Mapping[str, str] | None) -> dict[str, str]:
    if fractures is not None:
        return dict(fractures)
    rng = _rng(seed, "fractures")
    chosen = {}
    for level in LEVELS:
        hit, label = rng.random() < _RANDOM_FRACTURE_P, FRACTURE_CLASSES[int(rng.integers(2))]
        if hit:
            chosen[level] = label
    return chosen


def phantom_labels(seed: int) -> dict[str, str]:
    """The class of each level (T12-L5) that :func:`make_phantom` draws for ``seed`` with seed-chosen fractures,
    without drawing it: what a check set holds is known before any study runs."""
    chosen = _choose_fractures(int(seed), None)
    return {level: chosen.get(level, "normal") for level in LEVELS}


def _fracture(seed: int, level: str, label: str, deformity: str | None) -> _Fracture:
    rng = _rng(seed, "fracture", level)
    drawn = DEFORMITIES[int(rng.choice(3, p=_DEFORMITY_P))]
    return _Fracture(
        label=label,
        deformity=deformity or drawn,
        loss=float(rng.uniform(*_HEIGHT_LOSS)),
        step_mm=float(rng.uniform(1.0, 2.0)),
        band_mm=float(rng.uniform(2.5, 5.0)),
    )


def _scene(
    seed: int, fractures: Mapping[str, str] | None, deformities: Mapping[str, str] | None, size: tuple[int, int]
) -> _Scene:
    rows, cols = int(size[0]), int(size[1])
    rng = _rng(seed, "anatomy")
    # The field of view stays that of a lateral lumbar film whatever the
    # matrix, so a smaller phantom is a coarser one, not a zoomed one.
    spacing = max(float(rng.uniform(410.0, 470.0)) / rows, 260.0 / cols)
    spacing = round(spacing, 6)  # the value DICOM and JSON carry is the one used
    scale = float(rng.uniform(0.95, 1.05))
    bone = float(rng.uniform(0.55, 1.0))  # osteoporotic to normal
    chosen = _choose_fractures(seed, fractures)
    bodies = []
    for name in _DRAWN:
        width, height, ratio = _BODY[name]
        jitter = rng.uniform(0.97, 1.03, size=3)
        label = chosen.get(name)
        fracture = _fracture(seed, name, label, (deformities or {}).get(name)) if label else None
        bodies.append(
            _Body(
                name=name,
                width=width * scale * float(jitter[0]),
                height=height * scale * float(jitter[1]),
                ratio=ratio * float(rng.uniform(0.98, 1.02)),
                concavity=float(rng.uniform(0.5, 1.3)),
                waist=float(rng.uniform(0.6, 1.6)),
                density=float(jitter[2]),
                fracture=fracture,
            )
        )
    disc_scale, lordosis = float(rng.uniform(0.75, 1.15)), float(rng.uniform(0.8, 1.25))
    discs = tuple((mid * disc_scale * float(rng.uniform(0.9, 1.1)), wedge * lordosis) for mid, wedge in _DISC.values())
    return _Scene(
        seed=seed,
        rows=rows,
        cols=cols,
        spacing=spacing,
        bodies=tuple(bodies),
        discs=discs,
        sacral_slope=float(rng.uniform(32.0, 46.0)),
        tilt=float(rng.uniform(-4.0, 4.0)),
        anchor=(float(rng.uniform(0.44, 0.56)), float(rng.uniform(0.45, 0.55))),
        bone=bone,
        cortex=float(rng.uniform(0.8, 1.2)),
        contrast=float(rng.uniform(0.85, 1.15)),
        brightness=float(rng.uniform(-150.0, 150.0)),
        noise=float(rng.uniform(18.0, 45.0)),
        sharpen=float(rng.uniform(0.4, 1.0)),
        equalise=float(rng.uniform(0.3, 0.6)),
    )
