"""The whole film: the chain of bodies in lordosis, compositing, soft tissue and surroundings, display; make_phantom."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from olvf.phantom.anatomy import _DRAWN, LEVELS, MAX_VALUE, Phantom, Vertebra, _Body, _rng, _Scene, _scene, _validate
from olvf.phantom.bodies import _band_noise, _endplates, _heights, _Patch, _render_sacrum, _render_vertebra

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
