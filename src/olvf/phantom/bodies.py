"""One vertebral body drawn as a patch: its outline, cortex, trabecular texture, fracture signs, and the sacrum."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from olvf.phantom.anatomy import _Body, _Fracture, _rng, _Scene

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
