"""Phantom lateral lumbar radiographs with exact ground truth, made by code.

No patient radiograph may ship with olvf, yet CI, the end-to-end tests, a new
user and the detector's training all need a radiograph with vertebrae in it.
``make_phantom`` draws one from a seed; ``write_dicom`` and ``write_truth``
save it as a DICOM file and its truth as JSON.

Conventions
    * Lateral view, **patient facing left**: anterior (the front of the
      vertebral bodies, the abdomen) is on the image's left, posterior (the
      spinous processes, the back) on its right, head at the top. DICOM
      Patient Orientation is therefore ``P\\F``. This is how a left-lateral
      (``LL``) radiograph is conventionally displayed.
    * Pixels are 12-bit (0..4095) in the MONOCHROME2 sense: bone bright, air
      dark.
    * Boxes are ``(x1, y1, x2, y2)`` in pixels, ``x1, y1`` the first column and
      row inside the vertebral body and ``x2, y2`` one past the last
      (so ``x2 - x1`` is the width); they are the tight axis-aligned box of
      the body only, posterior elements excluded.

Anatomy
    Vertebral bodies T8 to L5 and the sacrum (S1 and below) sit on a chain
    that follows lumbar lordosis (bulging anteriorly, apex near L3-L4) above a
    sacral slope of about 30-45 degrees, with thoracic kyphosis above. Each body
    is a rounded, slightly trapezoidal outline with concave endplates, a
    bright cortical rim (endplates brighter than walls), vertically anisotropic
    band-limited trabecular texture, wedge-shaped discs between bodies,
    fainter posterior elements (pedicle, articular pillar, spinous process),
    and for T9-T12 ribs. Around them: a soft-tissue envelope with air outside,
    lung bases behind the diaphragm, bowel gas, iliac wings over L4-S1,
    sometimes aortic calcification, a smooth large-scale gradient, detector
    blur, the edge enhancement of a processed radiograph and quantum noise
    that grows with attenuation. A seed varies body sizes, lordosis, sacral
    slope, position, rotation (up to about 4 degrees), bone density,
    contrast, brightness and noise.

    Only T12 and L1-L5 are *levels* (classified, in ``Phantom.levels``).
    T8-T11 and S1 are drawn because real films show them (the spine does not
    stop at T12); the ones wholly inside the image are listed in
    ``Phantom.context`` (class "normal", never fractured) so a detector's
    training set can decide whether to label them.

Fractures (Genant semi-quantitative deformities, height loss 25-40 %)
    * wedge: anterior height reduced (superior endplate collapses anteriorly);
    * biconcave: middle height reduced (both endplates cave in centrally);
    * crush: the whole body loses height.
    The spine above and below follows the collapsed body (wedges add local
    kyphosis, crushes shorten the column).

    Old and fresh differ as they do on film:
    * old (healed): sclerotic, thick, bright, well-defined endplate at the
      collapse, a denser smooth band beneath it, smoother trabeculae and an
      anterior osteophyte at the collapsed corner (normal bodies get
      degenerative spurs too, at random, so a spur alone proves nothing);
    * fresh: a bright irregular band of trabecular condensation with a thin
      impaction line a few millimetres under the collapsed endplate, a
      blurred and interrupted cortical outline there, and a small step in the
      anterior cortex.

Everything is vectorised numpy/OpenCV: a 2500x2000 phantom takes about a
second. The same seed and arguments give identical pixels; random streams
are split by purpose, so adding a fracture to one level leaves the rest of the
picture as it was (except where the spine moves because the body collapsed).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

import olvf.json_text as json_text
from olvf.errors import InputError
from olvf.runtime.atomic import write_bytes_atomic, write_text_atomic

LEVELS: tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5")
CLASSES: tuple[str, ...] = ("normal", "old", "fresh")
FRACTURE_CLASSES: tuple[str, ...] = ("old", "fresh")
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


# --------------------------------------------------------------------------- body shape


def _endplates(body: _Body, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Superior and inferior endplate depth (v, mm, down) at t = 0 (anterior) .. 1 (posterior)."""
    hp = body.height
    ha = hp * body.ratio
    half = (ha + (hp - ha) * t) / 2
    dip = body.concavity * np.sin(np.pi * t) ** 2
    top, bottom = -half + dip, half - dip
    f = body.fracture
    if f is None:
        return top, bottom
    mid = (ha + hp) / 2
    if f.deformity == "wedge":
        # The superior endplate gives way in front; the posterior wall stands.
        top = top + f.loss * ha * (1 - t) ** 1.4
    elif f.deformity == "biconcave":
        cave = f.loss * mid / 2 * np.sin(np.pi * t) ** 1.3
        top, bottom = top + cave, bottom - cave
    else:  # crush: the whole body sinks, the centre a little more
        sink = f.loss * mid / 2 * (0.9 + 0.1 * np.sin(np.pi * t))
        top, bottom = top + 1.2 * sink, bottom - 0.8 * sink
    return top, bottom


def _heights(body: _Body) -> tuple[float, float, float]:
    top, bottom = _endplates(body, np.array([0.0, 0.5, 1.0]))
    h = bottom - top
    return float(h[0]), float(h[1]), float(h[2])


def _resample(points: np.ndarray, step: float) -> np.ndarray:
    """A closed polygon resampled at equal arc length, so smoothing means the same everywhere."""
    closed = np.vstack([points, points[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    dist = np.concatenate([[0.0], np.cumsum(seg)])
    samples = np.arange(0.0, dist[-1], step)
    return np.stack([np.interp(samples, dist, closed[:, 0]), np.interp(samples, dist, closed[:, 1])], axis=1)


def _smooth_closed(points: np.ndarray, sigma: float) -> np.ndarray:
    """Round the corners of a closed polygon by a circular Gaussian moving average."""
    radius = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.concatenate([points[-radius:], points, points[:radius]])
    return np.stack([np.convolve(padded[:, i], k, mode="valid") for i in range(2)], axis=1)


def _outline(body: _Body, rng: np.random.Generator) -> np.ndarray:
    """The body's outline in mm (u posterior, v down), corners rounded, deformities applied."""
    n = 80
    t = np.linspace(0.0, 1.0, n)
    top, bottom = _endplates(body, t)
    w = body.width
    u = -w / 2 + t * w
    s = np.linspace(0.0, 1.0, n)[1:-1]
    f = body.fracture
    # Anterior wall from bottom to top: a waist, and for fresh fractures a step
    # where the cortex buckled, just under the collapsed endplate.
    va = bottom[0] + (top[0] - bottom[0]) * s
    ua = -w / 2 + body.waist * np.sin(np.pi * s)
    if f is not None and f.label == "fresh":
        at = 0.62 if f.deformity != "biconcave" else 0.5
        ua = ua - f.step_mm / (1 + np.exp(-(s - at) / 0.015))
    vp = top[-1] + (bottom[-1] - top[-1]) * s
    up = w / 2 - 0.5 * body.waist * np.sin(np.pi * s)
    superior, inferior = _spurs(body, rng)
    points = np.concatenate(
        [
            np.stack([u, top], 1),
            np.stack([up, vp], 1),
            np.stack([u[::-1], bottom[::-1]], 1),
            np.array([[-w / 2 - inferior, bottom[0] + 0.5 * inferior]]).reshape(-1, 2)[: int(inferior > 0)],
            np.stack([ua, va], 1),
            np.array([[-w / 2 - superior, top[0] - 0.5 * superior]]).reshape(-1, 2)[: int(superior > 0)],
        ]
    )
    dense = _smooth_closed(_resample(points, 0.2), sigma=(1.6 if f is None or f.label == "old" else 1.1) / 0.2)
    return _wobble(dense, rng, 0.2, amp=0.25, corr=4.0)


def _spurs(body: _Body, rng: np.random.Generator) -> tuple[float, float]:
    """Lengths (mm, 0 = none) of anterior osteophytes at the superior and inferior corners.

    Degenerative spurs are common at this age on any body, so they cannot
    give a fracture away; a healed fracture nearly always has one at the
    collapsed corner.
    """
    draws = rng.random(4)
    superior = float(1.5 + 2.0 * draws[2]) if draws[0] < 0.2 else 0.0
    inferior = float(1.5 + 2.0 * draws[3]) if draws[1] < 0.2 else 0.0
    f = body.fracture
    if f is not None and f.label == "old":
        superior = max(superior, 2.5 + draws[2])
    return superior, inferior


def _wobble(points: np.ndarray, rng: np.random.Generator, step: float, amp: float, corr: float) -> np.ndarray:
    """Displace a closed outline sampled every ``step`` mm by smooth noise: bone is not drawn with a ruler."""
    n = len(points)
    wrap = int(3 * corr / step) + 1
    noise = rng.standard_normal((n + 2 * wrap, 2)).astype(np.float32)
    smooth = np.asarray(cv2.GaussianBlur(noise, (1, 0), sigmaX=0.1, sigmaY=corr / step)[wrap:-wrap], np.float64)
    smooth[-wrap:] *= np.linspace(1.0, 0.0, wrap)[:, None]  # close the loop without a seam
    smooth[:wrap] *= np.linspace(0.0, 1.0, wrap)[:, None]
    return points + amp * smooth / (float(smooth.std()) + 1e-6)


# --------------------------------------------------------------------------- patch rendering


@dataclass(frozen=True)
class _Patch:
    layers: np.ndarray  # (rows, cols, 2) float32: attenuation, body mask
    origin: tuple[float, float]  # body origin (u = v = 0) in patch pixels (x, y)


def _fill(
    polygons: Sequence[np.ndarray], shape: tuple[int, int], origin: tuple[float, float], scale: float
) -> np.ndarray:
    """Filled polygons (mm) as a uint8 0/1 mask in patch pixels."""
    mask = np.zeros(shape, np.uint8)
    shift = 4  # sub-pixel vertices
    pts = [np.round((p * scale + origin) * (1 << shift)).astype(np.int32) for p in polygons]
    cv2.fillPoly(mask, pts, 1, lineType=cv2.LINE_8, shift=shift)
    return mask


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 5)
    return inside - outside


def _band_noise(rng: np.random.Generator, shape: tuple[int, int], sx: float, sy: float) -> np.ndarray:
    """Zero-mean unit-variance band-limited noise, correlated over (sx, sy) pixels."""
    white = rng.standard_normal(shape, dtype=np.float32)
    fine = cv2.GaussianBlur(white, (0, 0), sigmaX=max(sx, 0.4), sigmaY=max(sy, 0.4))
    coarse = cv2.GaussianBlur(white, (0, 0), sigmaX=max(3 * sx, 1.0), sigmaY=max(3 * sy, 1.0))
    band = fine - coarse
    return band / (float(band.std()) + 1e-6)


def _ridge(sd: np.ndarray, thickness: float) -> np.ndarray:
    """A bright line just inside the boundary: cortical bone seen edge-on."""
    t = max(thickness, 0.8)
    return np.exp(-0.5 * ((sd - 0.5 * t) / (0.5 * t)) ** 2).astype(np.float32)


def _smooth_curve(rng: np.random.Generator, n: int, corr: float, amp: float) -> np.ndarray:
    """A smooth random 1-D function of n samples (irregular fracture lines)."""
    x = cv2.GaussianBlur(rng.standard_normal((1, n)).astype(np.float32), (0, 0), sigmaX=max(corr, 0.5)).ravel()
    return amp * x / (float(x.std()) + 1e-6)


def _posterior_elements(body: _Body, thoracic: bool, rng: np.random.Generator) -> list[tuple[np.ndarray, float, float]]:
    """Neural arch and pedicle as (polygon mm, fill, rim) in the body's frame.

    One smoothed outline runs pedicle -> superior articular process -> lamina
    -> spinous process -> inferior articular process; the gap under the
    pedicle is the intervertebral foramen. Both pedicles superimpose, so they
    get a ring of their own.
    """
    hp = body.height
    top, bottom = _endplates(body, np.array([1.0]))
    t0, b0 = float(top[0]), float(bottom[0])
    x0 = body.width / 2 - 1.5
    drop = 0.45 if thoracic else 0.0  # thoracic spinous processes slope down
    arch = np.array(
        [
            [0.0, t0 + 1.5],
            [11.0, t0 + 1.0],
            [12.0, t0 - 7.5],
            [17.5, t0 - 9.0],
            [21.0, t0 + 3.0],
            [27.0, t0 + 5.0 + drop * 6],
            [50.0, t0 + 3.0 + drop * 28],
            [55.5, t0 + 7.5 + drop * 31],
            [54.5, t0 + 0.62 * hp + drop * 31],
            [48.0, t0 + 0.7 * hp + drop * 28],
            [27.0, b0 - 3.0 + drop * 4],
            [23.5, b0 + 7.5],
            [17.5, b0 + 8.5],
            [14.0, b0 - 4.0],
            [11.5, t0 + 0.45 * hp],
            [0.0, t0 + 0.5 * hp],
        ]
    )
    arch[:, 0] += x0
    arch = _wobble(_smooth_closed(_resample(arch, 0.3), 2.0 / 0.3), rng, 0.3, amp=0.7, corr=5.0)
    a = np.linspace(0, 2 * np.pi, 120, endpoint=False)
    pedicle = np.stack([x0 + 8.0 + 8.0 * np.cos(a), t0 + 0.25 * hp + 0.17 * hp * np.sin(a)], 1)
    return [(arch, 0.07, 0.09), (pedicle, 0.03, 0.06)]


def _render_vertebra(body: _Body, scene: _Scene) -> _Patch:
    """Draw one vertebra upright in its own frame (u posterior, v down, origin at the body's centre)."""
    s = 1.0 / scene.spacing
    rng = _rng(scene.seed, "vertebra", body.name)
    outline = _outline(body, rng)
    posterior = _posterior_elements(body, body.name in ("T8", "T9", "T10", "T11"), rng)
    lo = np.minimum(outline.min(0), np.min([p.min(0) for p, _, _ in posterior], axis=0)) - 4.0
    hi = np.maximum(outline.max(0), np.max([p.max(0) for p, _, _ in posterior], axis=0)) + 4.0
    shape = (int(np.ceil((hi[1] - lo[1]) * s)), int(np.ceil((hi[0] - lo[0]) * s)))
    origin = (-lo[0] * s, -lo[1] * s)
    u = ((np.arange(shape[1], dtype=np.float32) - origin[0]) / s)[None, :]  # mm, one row
    v = ((np.arange(shape[0], dtype=np.float32) - origin[1]) / s)[:, None]  # mm, one column

    mask = _fill([outline], shape, origin, s)
    sd = _signed_distance(mask) / s  # mm, positive inside
    alpha = np.clip(sd * s + 0.5, 0.0, 1.0)

    t = np.clip((u + body.width / 2) / body.width, 0.0, 1.0)
    top, bottom = _endplates(body, t)
    vn = (v - (top + bottom) / 2) / np.maximum((bottom - top) / 2, 1.0)  # -1 top endplate .. 1 bottom
    # Path length through a roughly cylindrical body seen from the side.
    chord = 0.6 + 0.4 * np.sqrt(np.clip(1.0 - (2 * t - 1) ** 2, 0.0, 1.0))

    f = body.fracture
    tex_amp = 0.22 if f is None or f.label == "fresh" else 0.12
    vertical = _band_noise(rng, shape, 0.3 * s, 1.3 * s)  # vertical trabeculae dominate
    round_ = _band_noise(rng, shape, 0.5 * s, 0.5 * s)
    texture = 1.0 + tex_amp * (0.8 * vertical + 0.4 * round_)
    # Osteoporotic bodies lose trabeculae first: the "empty box" with frame.
    trab = 0.24 * scene.bone * body.density * chord * texture

    endness = np.clip((np.abs(vn) - 0.55) / 0.35, 0.0, 1.0)
    cortex_amp = scene.cortex * (0.12 + 0.16 * endness) * (0.75 + 0.25 * scene.bone)
    # Cortical brightness varies along the outline (thickness, obliquity).
    cortex = cortex_amp * _ridge(sd, 0.9) * (1.0 + 0.25 * _band_noise(rng, shape, 3.0 * s, 3.0 * s))

    extra = np.zeros(shape, np.float32)
    if f is not None:
        side = _collapsed_side(f, vn)
        if f.label == "old":
            sclerotic = scene.cortex * 0.42 * _ridge(sd, 1.8)
            cortex = cortex * (1 - side) + side * np.maximum(cortex, sclerotic)
            # A dense band under the healed endplate, and a body denser throughout.
            extra += 0.10 * np.exp(-0.5 * ((np.abs(vn) - 0.72) / 0.2) ** 2) * side + 0.03
        else:
            cortex = _fresh_cortex(cortex, side, rng, s)
            extra += _condensation(body, f, u, v, rng, s)
    atten = alpha * (trab + extra) + np.where(sd > -1.5, cortex, 0.0)

    # The neural arch lies beside the body, not in front of it: it shows less where they overlap.
    atten += _shells(posterior, shape, origin, s, round_) * scene.bone**0.5 * (1 - 0.6 * alpha)
    layers = np.dstack([atten.astype(np.float32), alpha.astype(np.float32)])
    return _Patch(layers, origin)


def _shells(
    parts: list[tuple[np.ndarray, float, float]],
    shape: tuple[int, int],
    origin: tuple[float, float],
    s: float,
    texture: np.ndarray,
) -> np.ndarray:
    """Pedicles and processes are cortical shells: a rim over a faint, textured core."""
    out = np.zeros(shape, np.float32)
    for polygon, fill, rim in parts:
        sd = _signed_distance(_fill([polygon], shape, origin, s)) / s
        inside = np.clip(sd * s + 0.5, 0.0, 1.0)
        out += fill * inside * (1 + 0.35 * texture) + rim * _ridge(sd, 1.2)
    return cv2.GaussianBlur(out, (0, 0), 0.5 * s)


def _collapsed_side(f: _Fracture, vn: np.ndarray) -> np.ndarray:
    """Weight 0..1 of the part of the body next to the endplate(s) that collapsed."""
    upper = np.clip((-vn - 0.2) / 0.5, 0.0, 1.0)
    if f.deformity == "biconcave":
        return np.maximum(upper, np.clip((vn - 0.2) / 0.5, 0.0, 1.0)).astype(np.float32)
    return upper.astype(np.float32)


def _fresh_cortex(cortex: np.ndarray, side: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """Blur and interrupt the cortex near a fresh collapse: the outline is no longer crisp."""
    blurred = cv2.GaussianBlur(cortex, (0, 0), 0.8 * s)
    gaps = _band_noise(rng, cortex.shape, 2.0 * s, 2.0 * s)
    broken = blurred * np.clip(0.9 + 0.5 * gaps, 0.2, 1.0)
    return cortex * (1 - side) + broken * side


def _condensation(
    body: _Body, f: _Fracture, u: np.ndarray, v: np.ndarray, rng: np.random.Generator, s: float
) -> np.ndarray:
    """Bright irregular band of impacted trabeculae under the collapsed endplate(s), with a thin line."""
    shape = (v.shape[0], u.shape[1])
    t = np.clip((u[0] + body.width / 2) / body.width, 0.0, 1.0)
    top, bottom = _endplates(body, t)
    jitter = _smooth_curve(rng, shape[1], 1.5 * s, 0.7)
    irregular = 0.55 + 0.45 * _band_noise(rng, shape, 1.2 * s, 0.6 * s)
    ends = [top + f.band_mm + jitter]
    if f.deformity == "biconcave":
        ends.append(bottom - f.band_mm - jitter)
    out = np.zeros(shape, np.float32)
    for centre in ends:
        d = v - centre[None, :]
        band = 0.14 * np.exp(-0.5 * (d / 1.6) ** 2) * irregular
        line = 0.12 * np.exp(-0.5 * (d / 0.35) ** 2)
        out += (band + line).astype(np.float32)
    return out


def _render_sacrum(body: _Body, scene: _Scene) -> _Patch:
    """S1 and the sacrum below it, in S1's frame; the mask layer is S1's body only."""
    s = 1.0 / scene.spacing
    rng = _rng(scene.seed, "sacrum")
    w, h = body.width, body.height
    # A curved wedge: the anterior surface concave (sacral kyphosis), the
    # back carrying the sacral canal and crest, tapering to the coccyx.
    sacrum = np.array(
        [
            [-w / 2, -h / 2],
            [-w / 2 + 1.0, h / 2],
            [-w / 2 + 5.0, h / 2 + 25],
            [-w / 2 + 14.0, h / 2 + 50],
            [-w / 2 + 26.0, h / 2 + 70],
            [-w / 2 + 34.0, h / 2 + 84],
            [-w / 2 + 42.0, h / 2 + 80],
            [w / 2 + 4.0, h / 2 + 50],
            [w / 2 + 12.0, h / 2 + 18],
            [w / 2 + 16.0, -h / 2 + 2],
            [w / 2 + 10.0, -h / 2 - 2],
            [w / 2, -h / 2 + 0.5],
        ]
    )
    sacrum = _smooth_closed(_resample(sacrum, 0.3), 2.0 / 0.3)
    s1 = np.array([[-w / 2, -h / 2], [w / 2, -h / 2 + 0.5], [w / 2, h / 2], [-w / 2 + 1.0, h / 2]])
    s1 = _smooth_closed(_resample(s1, 0.2), 1.4 / 0.2)
    lo, hi = sacrum.min(0) - 4.0, sacrum.max(0) + 4.0
    shape = (int(np.ceil((hi[1] - lo[1]) * s)), int(np.ceil((hi[0] - lo[0]) * s)))
    origin = (-lo[0] * s, -lo[1] * s)
    u = ((np.arange(shape[1], dtype=np.float32) - origin[0]) / s)[None, :]
    v = ((np.arange(shape[0], dtype=np.float32) - origin[1]) / s)[:, None]

    sd = _signed_distance(_fill([sacrum], shape, origin, s)) / s
    alpha = np.clip(sd * s + 0.5, 0.0, 1.0)
    s1_sd = _signed_distance(_fill([s1], shape, origin, s)) / s
    s1_alpha = np.clip(s1_sd * s + 0.5, 0.0, 1.0)
    texture = 1.0 + 0.2 * _band_noise(rng, shape, 0.4 * s, 0.9 * s)
    fade = np.clip(1.0 - (v - h / 2) / 120.0, 0.35, 1.0)  # the sacrum thins towards the coccyx
    canal = np.exp(-0.5 * ((u - w / 2 - 5.0) / 3.0) ** 2) * (v < h / 2 + 40)  # sacral canal: less bone
    # S1's body is a vertebral body; below it the fused sacrum is thinner bone.
    density = 0.10 + 0.05 * cv2.GaussianBlur(s1_alpha, (0, 0), 3.0 * s)
    atten = density * scene.bone * alpha * texture * fade * (1 - 0.5 * canal)
    cortex = scene.cortex * (0.75 + 0.25 * scene.bone)
    atten += cortex * 0.12 * _ridge(sd, 1.0) * fade
    # S1 keeps its own endplate and walls; the S1-S2 disc remnant is a faint line.
    atten += cortex * (0.10 + 0.12 * (v < 0)) * _ridge(s1_sd, 0.9)
    layers = np.dstack([atten.astype(np.float32), s1_alpha.astype(np.float32)])
    return _Patch(layers, origin)


# --------------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class _Pose:
    centre: np.ndarray  # mm, image frame (x right, y down)
    theta: float  # radians; positive tilts the anterior end down


def _rotation(theta: float) -> np.ndarray:
    """Local (u posterior, v down) to image (x, y): positive theta drops the anterior end."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, s], [-s, c]])


def _chords(body: _Body) -> tuple[np.ndarray, np.ndarray]:
    """Superior and inferior endplate chords (anterior point, posterior point) in local mm."""
    top, bottom = _endplates(body, np.array([0.0, 1.0]))
    w = body.width
    return (np.array([[-w / 2, top[0]], [w / 2, top[1]]]), np.array([[-w / 2, bottom[0]], [w / 2, bottom[1]]]))


def _tilt_of(chord: np.ndarray) -> float:
    d = chord[1] - chord[0]
    return float(-np.arctan2(d[1], d[0]))


def _chain(scene: _Scene, theta0: float) -> list[_Pose]:
    """Stack the bodies through their discs, top to bottom, starting at (0, 0)."""
    poses = [_Pose(np.zeros(2), theta0)]
    for i, body in enumerate(scene.bodies[:-1]):
        pose, below = poses[-1], scene.bodies[i + 1]
        _, inferior = _chords(body)
        world = pose.centre + inferior @ _rotation(pose.theta).T
        phi = pose.theta + _tilt_of(inferior)
        mid, wedge = scene.discs[i]
        phi_next = phi + np.radians(wedge)
        # Keep the back of a strongly wedged disc open (a collapsed disc is not modelled).
        min_mid = 0.5 * (body.width + below.width) / 2 * np.tan(abs(np.radians(wedge))) + 1.5
        mid = max(mid, min_mid)
        avg = (phi + phi_next) / 2
        superior, _ = _chords(below)
        theta_next = phi_next - _tilt_of(superior)
        top_mid = world.mean(0) + mid * np.array([np.sin(avg), np.cos(avg)])
        centre = top_mid - _rotation(theta_next) @ superior.mean(0)
        poses.append(_Pose(centre, theta_next))
    return poses


def _place(scene: _Scene) -> list[_Pose]:
    """Poses in image mm: sacral slope as drawn, positioning tilt, L3 at the anchor.

    Fractures add kyphosis. A patient compensates about half of it by tilting
    the pelvis back (smaller sacral slope), the rest leans the upper spine
    forward.
    """
    s1_top, _ = _chords(scene.bodies[-1])
    trial = _chain(scene, 0.0)
    intact = _chain(replace(scene, bodies=tuple(replace(b, fracture=None) for b in scene.bodies)), 0.0)
    kyphosis = (intact[-1].theta - intact[0].theta) - (trial[-1].theta - trial[0].theta)
    slope = np.radians(max(scene.sacral_slope - 0.5 * np.degrees(kyphosis), 20.0) + scene.tilt)
    poses = _chain(scene, slope - (trial[-1].theta + _tilt_of(s1_top)))
    l3 = _DRAWN.index("L3")
    target = np.array([scene.anchor[0] * scene.cols, scene.anchor[1] * scene.rows]) * scene.spacing
    shift = target - poses[l3].centre
    return [_Pose(p.centre + shift, p.theta) for p in poses]


# --------------------------------------------------------------------------- compositing


def _composite(canvas: np.ndarray, patch: _Patch, pose: _Pose, spacing: float) -> tuple[np.ndarray, int, int]:
    """Add the patch's attenuation to the canvas; return its warped body mask and window origin."""
    rot = _rotation(pose.theta)
    centre = pose.centre / spacing
    # patch pixel p -> image pixel: centre + rot @ (p - origin)
    offset = centre - rot @ np.asarray(patch.origin)
    ph, pw = patch.layers.shape[:2]
    corners = np.array([[0, 0], [pw, 0], [0, ph], [pw, ph]], float) @ rot.T + offset
    rows, cols = canvas.shape
    x0, y0 = max(int(np.floor(corners[:, 0].min())) - 1, 0), max(int(np.floor(corners[:, 1].min())) - 1, 0)
    x1, y1 = min(int(np.ceil(corners[:, 0].max())) + 2, cols), min(int(np.ceil(corners[:, 1].max())) + 2, rows)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), np.float32), 0, 0
    m = np.hstack([rot, (offset - [x0, y0])[:, None]]).astype(np.float64)
    warped = cv2.warpAffine(patch.layers, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderValue=0)
    canvas[y0:y1, x0:x1] += warped[..., 0]
    return warped[..., 1], x0, y0


def _box(mask: np.ndarray, x0: int, y0: int) -> tuple[int, int, int, int] | None:
    inside = mask > 0.5
    if not inside.any():
        return None
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    return (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)


def _touches_edge(box: tuple[int, int, int, int], rows: int, cols: int) -> bool:
    return box[0] <= 0 or box[1] <= 0 or box[2] >= cols or box[3] >= rows


# --------------------------------------------------------------------------- surroundings


def _world(pose: _Pose, local: npt.ArrayLike) -> np.ndarray:
    return pose.centre + np.atleast_2d(local) @ _rotation(pose.theta).T


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _trunk_lines(scene: _Scene, poses: list[_Pose], rng: np.random.Generator) -> tuple[Any, Any]:
    """Anterior (belly) and posterior (back) skin lines as x(y) in mm.

    They follow the lumbar curve (a quadratic through T8-L5) at a distance,
    the back bulging over the buttocks below S1 and the belly at L3-L4.
    """
    lumbar = slice(0, _DRAWN.index("L5") + 1)
    bodies, ps = scene.bodies[lumbar], poses[lumbar]
    fronts = np.array([_world(p, [-b.width / 2, 0.0])[0] for p, b in zip(ps, bodies)])
    tips = np.array([_world(p, [b.width / 2 + 56.0, 0.0])[0] for p, b in zip(ps, bodies)])
    front_fit = np.polyfit(fronts[:, 1], fronts[:, 0], 2)
    back_fit = np.polyfit(tips[:, 1], tips[:, 0], 2)
    back_gap, belly = float(rng.uniform(30.0, 70.0)), float(rng.uniform(120.0, 210.0))
    paunch, buttock = float(rng.uniform(0.0, 40.0)), float(rng.uniform(30.0, 70.0))
    s1y, l4y = poses[-1].centre[1], poses[_DRAWN.index("L4")].centre[1]

    def front(y: np.ndarray) -> np.ndarray:
        flat = np.clip(y, fronts[0, 1] - 60.0, fronts[-1, 1] + 60.0)  # no runaway parabola
        return np.polyval(front_fit, flat) - belly - paunch * np.exp(-0.5 * ((y - l4y) / 90.0) ** 2)

    def back(y: np.ndarray) -> np.ndarray:
        flat = np.clip(y, tips[0, 1] - 60.0, tips[-1, 1] + 30.0)
        return np.polyval(back_fit, flat) + back_gap + buttock * _smoothstep((y - s1y + 10.0) / 110.0)

    return front, back


def _soft_tissue(scene: _Scene, poses: list[_Pose], factor: int) -> np.ndarray:
    """Soft tissue, lungs and bowel gas at 1/factor resolution (they are smooth)."""
    rng = _rng(scene.seed, "soft")
    rows, cols, sp = -(-scene.rows // factor), -(-scene.cols // factor), scene.spacing
    y = ((np.arange(rows, dtype=np.float32) + 0.5) * factor - 0.5) * sp
    x = ((np.arange(cols, dtype=np.float32) + 0.5) * factor - 0.5) * sp
    front_of, back_of = _trunk_lines(scene, poses, rng)
    front, back = front_of(y)[:, None], back_of(y)[:, None]
    d = np.clip((x[None, :] - front) / (back - front), 0.0, 1.0)
    # Path length through an elliptical trunk, flattened: thick in the middle.
    soft = (4.0 * d * (1.0 - d)) ** 0.3
    s1y = poses[-1].centre[1]
    soft *= 1.0 + 0.2 * _smoothstep((y[:, None] - s1y + 80.0) / 200.0)  # pelvis and hips
    inside = soft > 0
    # Bowel contents: mottled, in front of the spine.
    mm_per_px = sp * factor
    mottle = 0.6 * _band_noise(rng, soft.shape, 2.0 / mm_per_px, 2.0 / mm_per_px)
    mottle += 0.4 * _band_noise(rng, soft.shape, 6.0 / mm_per_px, 6.0 / mm_per_px)
    spine_front = np.array([_world(p, [-b.width / 2, 0.0])[0, 0] for p, b in zip(poses, scene.bodies)]).mean()
    belly = _smoothstep((spine_front + 20.0 - x[None, :]) / 90.0) * _smoothstep(
        (y[:, None] - poses[_DRAWN.index("T12")].centre[1]) / 80.0
    )
    soft += 0.010 * mottle * belly * inside
    soft -= 0.22 * _lung(y, x, poses, front, back, rng) * inside
    soft -= _bowel_gas(soft.shape, mm_per_px, belly, rng) * inside
    return np.clip(soft, 0.0, None).astype(np.float32)


def _lung(
    y: np.ndarray, x: np.ndarray, poses: list[_Pose], front: np.ndarray, back: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Lung bases: air above the diaphragm, down to about L1 in the posterior recess."""
    l1 = poses[_DRAWN.index("L1")].centre[1] + float(rng.uniform(-30.0, 5.0))
    height, reach = float(rng.uniform(90.0, 150.0)), float(rng.uniform(40.0, 80.0))
    # A dome: the posterior recess dips steeply, the diaphragm flattens in front.
    depth = back - x[None, :]  # mm in front of the skin of the back
    dome = l1 - height * (1.0 - np.exp(-np.clip(depth - 50.0, 0.0, None) / reach))
    # The ribcage and the back muscles lie behind the lungs.
    # The dome dips again in front (anterior recess), behind the abdominal wall.
    dome += 0.6 * height * _smoothstep((x[None, :] - front - 110.0) / -90.0)
    inside = _smoothstep((depth - 35.0) / 25.0) * _smoothstep((x[None, :] - front - 25.0) / 40.0)
    return _smoothstep((dome - y[:, None]) / 35.0) * inside


def _bowel_gas(shape: tuple[int, int], mm_per_px: float, belly: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Irregular pockets of gas in the bowel: the peaks of smooth noise, in front of the spine."""
    blobs = _band_noise(rng, shape, 12.0 / mm_per_px, 9.0 / mm_per_px)
    blobs += 0.35 * _band_noise(rng, shape, 3.0 / mm_per_px, 3.0 / mm_per_px)  # ragged edges
    threshold = float(rng.uniform(1.1, 1.7))  # how gassy this abdomen is
    pockets = _smoothstep((blobs - threshold) / 0.45)
    return float(rng.uniform(0.08, 0.16)) * pockets * belly


def _structures(scene: _Scene, poses: list[_Pose], factor: int) -> np.ndarray:
    """Ribs, iliac wings and aortic calcification at 1/factor resolution."""
    rng = _rng(scene.seed, "structures")
    rows, cols = -(-scene.rows // factor), -(-scene.cols // factor)
    px = 1.0 / (scene.spacing * factor)  # mid-resolution pixels per mm
    shift = 3
    layer = np.zeros((rows, cols), np.float32)

    def to_px(points_mm: np.ndarray) -> np.ndarray:
        return np.round(points_mm * px * (1 << shift)).astype(np.int32)

    def line(points_mm: np.ndarray, value: float, thickness_mm: float) -> None:
        tmp = np.zeros((rows, cols), np.uint8)
        cv2.polylines(tmp, [to_px(points_mm)], False, 255, max(1, int(round(thickness_mm * px))), cv2.LINE_AA, shift)
        layer[:] += value * tmp.astype(np.float32) / 255.0

    plates = np.zeros((rows, cols), np.float32)

    def area(points_mm: np.ndarray, value: float) -> None:
        tmp = np.zeros((rows, cols), np.uint8)
        cv2.fillPoly(tmp, [to_px(points_mm)], 255, cv2.LINE_AA, shift)
        plates[:] += value * tmp.astype(np.float32) / 255.0

    _ribs(line, scene, poses, rng)
    _iliac(line, area, scene, poses, rng)
    if rng.random() < 0.5:
        _aorta(line, scene, poses, rng)
    # Broad bony plates have no sharp edges seen through the trunk.
    return cv2.GaussianBlur(layer, (0, 0), max(0.5 * px, 0.5)) + cv2.GaussianBlur(plates, (0, 0), 6.0 * px)


def _ribs(line: Any, scene: _Scene, poses: list[_Pose], rng: np.random.Generator) -> None:
    """Lower ribs leave the back of T9-T12 and curve down; left and right ribs do not superimpose."""
    for name, length, curl in (("T9", 200.0, 0.25), ("T10", 170.0, 0.2), ("T11", 120.0, 0.1), ("T12", 75.0, 0.0)):
        i = _DRAWN.index(name)
        body, pose = scene.bodies[i], poses[i]
        length *= float(rng.uniform(0.8, 1.1))
        for dx, dy in ((0.0, 0.0), (float(rng.uniform(-8.0, 8.0)), float(rng.uniform(4.0, 12.0)))):
            s = np.linspace(0.0, 1.0, 30)[:, None]
            p0 = np.array([body.width / 2 + 6.0 + dx, -0.25 * body.height + dy])
            p1 = p0 + [0.65 * length, 0.35 * length]
            p2 = p0 + [(0.65 - curl) * length, 0.95 * length]
            local = (1 - s) ** 2 * p0 + 2 * (1 - s) * s * p1 + s**2 * p2  # quadratic Bezier
            path = _world(pose, local)
            line(path, 0.05, 8.0)
            line(path, -0.025, 4.5)  # the ribs' cortices show, their marrow hardly


def _iliac(line: Any, area: Any, scene: _Scene, poses: list[_Pose], rng: np.random.Generator) -> None:
    """Two iliac wings (left and right, magnified differently) whose crests arch over L4-L5."""
    l5 = poses[_DRAWN.index("L5")]
    b5 = scene.bodies[_DRAWN.index("L5")]
    cx = float(l5.centre[0] + b5.width * rng.uniform(0.1, 0.5))
    top = float(l5.centre[1] - rng.uniform(10.0, 30.0))
    for k in range(2):
        dx, dy = k * float(rng.uniform(4.0, 14.0)), k * float(rng.uniform(3.0, 12.0))
        a, b = float(rng.uniform(55.0, 80.0)), float(rng.uniform(25.0, 45.0))
        ang = np.linspace(np.pi * 1.0, np.pi * 2.0, 48)
        crest = np.stack([cx + dx + a * np.cos(ang), top + dy + b + b * np.sin(ang)], 1)
        # The wing narrows down to the sciatic notch and acetabulum.
        blade = np.vstack(
            [
                crest,
                [
                    [cx + dx + a * 0.45, top + dy + 120.0],
                    [cx + dx + a * 0.1, top + dy + 190.0],
                    [cx + dx - a * 0.35, top + dy + 120.0],
                ],
            ]
        )
        area(blade, 0.05)
        line(crest, 0.05, 4.0)


def _aorta(line: Any, scene: _Scene, poses: list[_Pose], rng: np.random.Generator) -> None:
    """Calcified plaques along the anterior aortic wall, common at this age."""
    for name in ("L1", "L2", "L3", "L4"):
        i = _DRAWN.index(name)
        if rng.random() < 0.6:
            body = scene.bodies[i]
            gap = float(rng.uniform(8.0, 22.0))
            v = float(rng.uniform(-body.height / 2, body.height / 2))
            seg = np.array([[-body.width / 2 - gap, v], [-body.width / 2 - gap - 1.0, v + rng.uniform(3.0, 12.0)]])
            line(_world(poses[i], seg), 0.25, 1.2)


# --------------------------------------------------------------------------- assembly


def _display(scene: _Scene, atten: np.ndarray) -> np.ndarray:
    """From attenuation to a processed 12-bit radiograph with quantum noise."""
    rng = _rng(scene.seed, "noise")
    rows, cols = atten.shape
    img = cv2.GaussianBlur(atten, (0, 0), max(0.18 / scene.spacing, 0.5))  # detector blur, about 0.2 mm
    # Processing of a clinical DX: unsharp masking and large-scale equalisation,
    # done on a small copy because both work on coarse structure.
    small = cv2.resize(img, (max(cols // 8, 1), max(rows // 8, 1)), interpolation=cv2.INTER_AREA)
    sigma_px = 6.0 / (scene.spacing * 8)
    low = cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma_px), (cols, rows), interpolation=cv2.INTER_LINEAR)
    very_low = cv2.resize(cv2.GaussianBlur(small, (0, 0), 6 * sigma_px), (cols, rows), interpolation=cv2.INTER_LINEAR)
    img = img + scene.sharpen * (img - low) - scene.equalise * (very_low - float(very_low.mean()))
    yy = np.linspace(-0.5, 0.5, rows, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, cols, dtype=np.float32)[None, :]
    g = _rng(scene.seed, "gradient").uniform(-0.12, 0.12, size=2)
    heel = 1.0 + float(g[0]) * yy + float(g[1]) * xx  # anode heel effect and uneven exposure
    value = (300.0 + scene.brightness + 1500.0 * scene.contrast * img) * heel
    value = 4095.0 * np.tanh(np.clip(value, 0.0, None) / 4095.0 * 1.15)  # soft shoulder, no hard clipping
    sigma = scene.noise * (0.5 + value / 2500.0)  # fewer photons behind bone
    white = rng.standard_normal((rows, cols), dtype=np.float32)
    kernel = cv2.getGaussianKernel(5, 0.5)
    # Detector-correlated noise, scaled back to unit variance.
    noise = cv2.GaussianBlur(white, (5, 5), 0.5) / float((kernel**2).sum())
    out = value + sigma * noise
    return np.clip(np.rint(out), 0, MAX_VALUE).astype(np.uint16)


def _window(pixels: np.ndarray) -> tuple[int, int]:
    """A window from the patient's pixels (air excluded) that shows bone and soft tissue."""
    sample = pixels[::4, ::4].astype(np.float32)
    body = sample[sample > np.percentile(sample, 5) + 150]
    lo, hi = np.percentile(body if body.size else sample, [1.0, 99.7])
    width = max(int(round(hi - lo)), 64)
    return int(round((hi + lo) / 2)), width


def make_phantom(
    seed: int = 0,
    fractures: Mapping[str, str] | None = None,
    size: tuple[int, int] = (2500, 2000),
    *,
    deformities: Mapping[str, str] | None = None,
) -> Phantom:
    """Draw a phantom lateral lumbar radiograph.

    ``fractures`` maps levels ("T12", "L1".."L5") to "old" or "fresh"; levels
    not listed are normal. None lets the seed choose (each level fractured
    with probability 0.12). ``deformities`` optionally fixes the Genant type
    ("wedge", "biconcave", "crush") of fractures listed in ``fractures``;
    otherwise the seed chooses it. ``size`` is (rows, columns). Raises InputError for anything
    invalid.
    """
    _validate(seed, fractures, deformities, size)
    scene = _scene(int(seed), fractures, deformities, size)
    poses = _place(scene)
    factor_lo = max(1, int(round(1.0 / scene.spacing)))  # about 1 mm per low-res pixel
    factor_mid = 2 if scene.spacing < 0.3 else 1
    full = (scene.rows, scene.cols)
    soft = cv2.resize(_soft_tissue(scene, poses, factor_lo), full[::-1], interpolation=cv2.INTER_LINEAR)
    canvas = np.asarray(soft, np.float32)
    canvas += cv2.resize(_structures(scene, poses, factor_mid), full[::-1], interpolation=cv2.INTER_LINEAR)
    truth = []
    for body, pose in zip(scene.bodies, poses):
        patch = _render_sacrum(body, scene) if body.name == "S1" else _render_vertebra(body, scene)
        mask, x0, y0 = _composite(canvas, patch, pose, scene.spacing)
        box = _box(mask, x0, y0) if mask.size else None
        truth.append((body, box))
    pixels = _display(scene, canvas)
    pixels.setflags(write=False)
    levels, context = _truth(truth, scene)
    centre, width = _window(pixels)
    return Phantom(
        pixels=pixels,
        levels=levels,
        context=context,
        pixel_spacing_mm=scene.spacing,
        seed=int(seed),
        window_center=centre,
        window_width=width,
    )


def _truth(
    drawn: list[tuple[_Body, tuple[int, int, int, int] | None]], scene: _Scene
) -> tuple[tuple[Vertebra, ...], tuple[Vertebra, ...]]:
    levels, context = [], []
    for body, box in drawn:
        f = body.fracture
        if body.name in LEVELS:
            if box is None or _touches_edge(box, scene.rows, scene.cols):
                # The placement keeps the lumbar spine well inside the field;
                # reaching this means the layout constants are wrong.
                raise RuntimeError(f"phantom layout put {body.name} outside the image (seed {scene.seed})")
            heights = _heights(body)
            levels.append(
                Vertebra(
                    body.name,
                    box,
                    f.label if f else "normal",
                    f.deformity if f else None,
                    f.loss if f else 0.0,
                    heights,
                )
            )
        elif box is not None and not _touches_edge(box, scene.rows, scene.cols):
            context.append(Vertebra(body.name, box, heights_mm=_heights(body)))
    return tuple(levels), tuple(context)


# --------------------------------------------------------------------------- output


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["olvf-phantom", *map(str, parts)]))


def dicom_dataset(phantom: Phantom, *, monochrome1: bool = False) -> Any:
    """The phantom as a pydicom Dataset (DX, For Presentation), uncompressed."""
    import hashlib

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    rows, cols = phantom.size
    photometric = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    stored = (MAX_VALUE - phantom.pixels.astype(np.uint16)) if monochrome1 else phantom.pixels
    digest = hashlib.sha256(np.ascontiguousarray(phantom.pixels).tobytes()).hexdigest()
    study = _uid("study", phantom.seed)
    series = _uid("series", phantom.seed, rows, cols, digest)
    instance = _uid("instance", phantom.seed, digest, photometric)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(DX_FOR_PRESENTATION)
    meta.MediaStorageSOPInstanceUID = UID(instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = instance
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    # Synthetic and says so: no dates, no real-looking identity.
    ds.PatientName = "PHANTOM^OLVF"
    ds.PatientID = "OLVF-PHANTOM"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.AccessionNumber = ""
    ds.StudyID = f"PHANTOM{phantom.seed}"[:16]
    ds.StudyDescription = "olvf phantom lateral lumbar spine"
    ds.SeriesDescription = f"SYNTHETIC PHANTOM (olvf-phantom seed {phantom.seed}), not a patient"[:64]
    ds.Modality = "DX"
    ds.Manufacturer = "olvf-phantom (synthetic)"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PresentationIntentType = "FOR PRESENTATION"
    # What a DX modality writes for the image it acquired: the phantom stands in for one, so that it meets the
    # intended-use gate as a patient's film would (olvf refuses DERIVED and SECONDARY images, its own SC among
    # them). It says it is synthetic in Manufacturer and Series Description, which the gate never trusts.
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.BodyPartExamined = "LSPINE"
    ds.ViewPosition = "LL"
    ds.ImageLaterality = "U"
    ds.PatientOrientation = list(PATIENT_ORIENTATION)
    spacing = f"{phantom.pixel_spacing_mm:.6f}".rstrip("0").rstrip(".")
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LIN"
    # -1: higher values mean less X-ray intensity (bone bright) as stored.
    ds.PixelIntensityRelationshipSign = 1 if monochrome1 else -1
    ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    # Stored values are inverted as MAX - v; the linear window of PS3.3 C.11.2.1.2 then needs
    # centre MAX + 1 - c to show exactly the MONOCHROME2 image.
    center = MAX_VALUE + 1 - phantom.window_center if monochrome1 else phantom.window_center
    ds.WindowCenter, ds.WindowWidth = str(center), str(phantom.window_width)
    ds.DetectorType = ""  # Type 2: there was no detector
    ds.AcquisitionContextSequence = []  # Type 2, required by the DX IOD
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    return ds


def write_dicom(
    phantom: Phantom, path: Path | str, *, monochrome1: bool = False, jpeg2000: bool = False, force: bool = False
) -> None:
    """Write the phantom as a DX For Presentation DICOM file, atomically.

    Explicit VR little endian by default; ``jpeg2000`` compresses losslessly
    (needs pylibjpeg-openjpeg). An existing file is replaced only with ``force``.
    """
    from pydicom.uid import JPEG2000Lossless

    path = Path(path)
    if path.exists() and not force:
        from olvf.errors import OutputExistsError

        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")
    ds = dicom_dataset(phantom, monochrome1=monochrome1)
    if jpeg2000:
        _require_jpeg2000()
        # Lossless: the same image, so the same SOP Instance UID.
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    write_bytes_atomic(path, buffer.getvalue(), force=force)


def _require_jpeg2000() -> None:
    from pydicom.pixels.encoders import JPEG2000LosslessEncoder

    if not JPEG2000LosslessEncoder.is_available:
        raise InputError(
            "JPEG 2000 output needs the pylibjpeg-openjpeg encoder; "
            "install it with: pip install pylibjpeg pylibjpeg-openjpeg (or write uncompressed without --jpeg2000)"
        )


def phantom_display(phantom: Phantom) -> np.ndarray:
    """The phantom as olvf's reader shows its DICOM: float32 (H, W) on the display scale [0, 1].

    The DICOM's Window Center/Width applied as DICOM's LINEAR function
    (PS3.3 C.11.2.1.2, as pydicom's ``apply_windowing``); a MONOCHROME1 file
    of the same phantom reads back the same within 1/width.
    """
    centre, width = phantom.window_center - 0.5, phantom.window_width - 1.0
    values = (phantom.pixels.astype(np.float32) - np.float32(centre)) / np.float32(width) + np.float32(0.5)
    return np.clip(values, 0.0, 1.0)


def truth_dict(phantom: Phantom, **extra: Any) -> dict[str, Any]:
    """The ground truth as JSON-ready data; ``extra`` adds fields such as the DICOM's photometric choice."""
    rows, cols = phantom.size
    return {
        "generator": "olvf-phantom",
        "synthetic": True,
        "seed": phantom.seed,
        "rows": rows,
        "columns": cols,
        "pixel_spacing_mm": phantom.pixel_spacing_mm,
        "anterior": phantom.anterior,
        "box_format": "x1,y1,x2,y2 pixels; x2,y2 exclusive; vertebral body only",
        "window": {"center": phantom.window_center, "width": phantom.window_width},
        **extra,
        "levels": [v.as_dict() for v in phantom.levels],
        "context": [v.as_dict() for v in phantom.context],
    }


def write_truth(phantom: Phantom, path: Path | str, force: bool = False, **extra: Any) -> None:
    """Write the ground truth as JSON, atomically; ``extra`` fields go in at the top level."""
    text = json_text.dumps(truth_dict(phantom, **extra), indent=2) + "\n"
    write_text_atomic(Path(path), text, force=force)
