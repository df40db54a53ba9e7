"""Pictures for people: the radiograph with every vertebra's box, class and Grad-CAM, and one heatmap per vertebra.

``render_overlay`` draws, on the radiograph fitted to at most 1600 px (and
enlarged to 800 px high when smaller, so labels stay legible):

- a header band: the demo warning on red for demo bundles, the MRI decision,
  and a colour legend; the radiograph sits below it, never under text;
- each vertebra's ensemble Grad-CAM (JET colours, blended in proportion to
  the map's value, so pixels the networks ignored keep their gray) **inside
  its detector box only**, resampled from the crop region the map covers;
- the box outline, just outside the box, in its class colour (normal green,
  old amber, fresh red), and a label such as ``L2 fresh 0.81`` beside it.

The mapping from original pixels is ``overlay = original * scale + (0, top)``
(:class:`Layout`); reports record it, so the boxes of ``report.json`` can be
found on the picture. OpenCV only: no fonts to install (Hershey, ASCII text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from olvf.runtime.study.results import StudyResult

BGR = tuple[int, int, int]
CLASS_COLOURS: dict[str, BGR] = {"normal": (0, 200, 0), "old": (0, 190, 255), "fresh": (0, 0, 255)}
UNKNOWN_COLOUR: BGR = (255, 255, 255)
DEMO_BACKGROUND: BGR = (0, 0, 190)
HEADER_BACKGROUND: BGR = (40, 40, 40)
WHITE: BGR = (255, 255, 255)
MAX_SIDE = 1600
MIN_HEIGHT = 800
HEAT_ALPHA = 0.55  # at the map's maximum; the gray shows through everywhere
HEATMAP_PANEL = 320
FONT = cv2.FONT_HERSHEY_DUPLEX


@dataclass(frozen=True)
class Mark:
    """One vertebra to draw: its box and crop region (original pixels), map, label and colour."""

    box: tuple[float, float, float, float]
    region: tuple[int, int, int, int]
    cam: np.ndarray
    label: str
    colour: BGR


@dataclass(frozen=True)
class Layout:
    """``overlay = original * scale + (0, top)``; ``size`` is the radiograph part (height, width)."""

    scale: float
    top: int
    size: tuple[int, int]

    @property
    def text_scale(self) -> float:
        # Hershey scale 1.0 is about 22 px high: about 1/60 of a 1600 px film, legible on a workstation.
        return float(np.clip(self.size[0] / 1600, 0.55, 1.0))

    @property
    def line_width(self) -> int:
        return max(3, int(round(4 * self.text_scale)))

    def box_span(self, box: Sequence[float]) -> tuple[int, int, int, int]:
        """Overlay pixels (x0, y0, x1, y1), exclusive ends, whose centres lie inside an original box."""
        x0, x1 = (int(np.ceil(v * self.scale - 0.5)) for v in (box[0], box[2]))
        y0, y1 = (int(np.ceil(v * self.scale - 0.5)) for v in (box[1], box[3]))
        return x0, y0 + self.top, x1, y1 + self.top

    def to_dict(self) -> dict[str, Any]:
        return {"scale": round(self.scale, 6), "offset": [0, self.top], "size": [self.size[1], self.size[0]]}


def fit_scale(shape: tuple[int, int]) -> float:
    """Fit the longer side into MAX_SIDE; enlarge small images to MIN_HEIGHT (labels need room)."""
    height, width = shape
    scale = min(MAX_SIDE / height, MAX_SIDE / width)
    return min(scale, 1.0) if height * min(scale, 1.0) >= MIN_HEIGHT else min(MIN_HEIGHT / height, scale)


def to_gray8(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [0, 1] float image resized to ``size`` (height, width) as uint8."""
    height, width = size
    shrinking = height < pixels.shape[0]
    resized = cv2.resize(
        np.asarray(pixels, np.float32), (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
    return np.clip(np.rint(resized * 255.0), 0, 255).astype(np.uint8)


def heat_colours(cam: np.ndarray) -> np.ndarray:
    """JET colours (..., 3) BGR float for a map in [0, 1]."""
    index = np.clip(np.rint(cam * 255.0), 0, 255).astype(np.uint8)
    return cv2.applyColorMap(index.reshape(index.shape[0], -1), cv2.COLORMAP_JET).reshape(*cam.shape, 3)


def blend(base: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Base (H, W, 3) uint8 with the map's colours, in proportion to the map (0 leaves the base as it was)."""
    alpha = (HEAT_ALPHA * np.clip(cam, 0.0, 1.0))[..., None]
    out = base.astype(np.float32) * (1.0 - alpha) + heat_colours(cam).astype(np.float32) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def sample_cam(cam: np.ndarray, region: Sequence[int], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The map (h, w), spread over ``region`` in original pixels, at original coordinates xs (W,) x ys (H,)."""
    height, width = cam.shape
    u = (xs - region[0]) / (region[2] - region[0]) * width - 0.5
    v = (ys - region[1]) / (region[3] - region[1]) * height - 0.5
    map_x = np.broadcast_to(u[None, :], (len(ys), len(xs))).astype(np.float32)
    map_y = np.broadcast_to(v[:, None], (len(ys), len(xs))).astype(np.float32)
    return cv2.remap(np.asarray(cam, np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _blend_in_box(canvas: np.ndarray, mark: Mark, layout: Layout) -> None:
    x0, y0, x1, y1 = layout.box_span(mark.box)
    x0, x1 = max(x0, 0), min(x1, canvas.shape[1])
    y0, y1 = max(y0, layout.top), min(y1, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    xs = (np.arange(x0, x1) + 0.5) / layout.scale
    ys = (np.arange(y0 - layout.top, y1 - layout.top) + 0.5) / layout.scale
    cam = sample_cam(mark.cam, mark.region, xs, ys)
    canvas[y0:y1, x0:x1] = blend(canvas[y0:y1, x0:x1], cam)


def _outline(canvas: np.ndarray, span: tuple[int, int, int, int], width: int, colour: BGR, top: int) -> None:
    """A frame ``width`` px wide just outside ``span``, so it never hides the heatmap inside.

    Clipped to the radiograph (rows from ``top``): a box at the image's edge has no frame on that side.
    """
    x0, y0, x1, y1 = span
    h, w = canvas.shape[:2]
    ox0, oy0, ox1, oy1 = max(x0 - width, 0), max(y0 - width, top), min(x1 + width, w), min(y1 + width, h)
    canvas[oy0 : max(y0, oy0), ox0:ox1] = colour
    canvas[min(y1, oy1) : oy1, ox0:ox1] = colour
    canvas[oy0:oy1, ox0 : max(x0, ox0)] = colour
    canvas[oy0:oy1, min(x1, ox1) : ox1] = colour


def _fit_text(text: str, max_width: int, scale: float, thickness: int) -> float:
    """The largest scale up to ``scale`` at which ``text`` fits ``max_width``."""
    width = cv2.getTextSize(text, FONT, scale, thickness)[0][0]
    return scale if width <= max_width else max(0.3, scale * max_width / width)


def _label(canvas: np.ndarray, mark: Mark, span: tuple[int, int, int, int], layout: Layout) -> None:
    """Beside the box on the side with more room, on black, in the class colour; inside it if no side fits."""
    scale, thickness = layout.text_scale, max(1, int(round(2 * layout.text_scale)))
    (tw, th), base = cv2.getTextSize(mark.label, FONT, scale, thickness)
    pad = max(4, int(6 * scale))
    gap = layout.line_width + pad
    x0, y0, x1, y1 = span
    room_right, room_left = canvas.shape[1] - (x1 + gap), x0 - gap
    if max(room_right, room_left) >= tw + 2 * pad:
        left = x1 + gap if room_right >= room_left else x0 - gap - tw - 2 * pad
        top = int(np.clip((y0 + y1) // 2 - (th + base) // 2 - pad, layout.top, canvas.shape[0] - th - base - 2 * pad))
    else:
        left, top = max(x0, 0) + pad, max(y0, layout.top) + pad
    cv2.rectangle(canvas, (left, top), (left + tw + 2 * pad, top + th + base + 2 * pad), (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, mark.label, (left + pad, top + pad + th), FONT, scale, mark.colour, thickness, cv2.LINE_AA)


def _header(
    width: int, lines: Sequence[Sequence[tuple[str, BGR]]], backgrounds: Sequence[BGR], scale: float
) -> np.ndarray:
    """Bands of text, one per line; each line is coloured segments."""
    thickness = max(1, int(round(2 * scale)))
    line_height = int(round(44 * scale))
    band = np.zeros((line_height * len(lines), width, 3), np.uint8)
    for i, (segments, background) in enumerate(zip(lines, backgrounds)):
        band[i * line_height : (i + 1) * line_height] = background
        text = "".join(s for s, _ in segments)
        fitted = _fit_text(text, width - 24, scale, thickness)
        x, baseline = 12, i * line_height + (line_height + cv2.getTextSize(text, FONT, fitted, thickness)[0][1]) // 2
        for segment, colour in segments:
            cv2.putText(band, segment, (x, baseline), FONT, fitted, colour, thickness, cv2.LINE_AA)
            x += cv2.getTextSize(segment, FONT, fitted, thickness)[0][0]
    return band


def legend() -> list[tuple[str, BGR]]:
    return [
        ("box: ", WHITE),
        ("normal", CLASS_COLOURS["normal"]),
        (" / ", WHITE),
        ("old", CLASS_COLOURS["old"]),
        (" / ", WHITE),
        ("fresh", CLASS_COLOURS["fresh"]),
        ("; colour inside: Grad-CAM of the predicted class", WHITE),
    ]


def render_overlay(
    pixels: np.ndarray, marks: Sequence[Mark], *, decision: str, demo_warning: str | None
) -> tuple[np.ndarray, Layout]:
    """The overlay (BGR uint8) of a [0, 1] radiograph and where its pixels went."""
    scale = fit_scale(pixels.shape)
    size = (max(1, int(round(pixels.shape[0] * scale))), max(1, int(round(pixels.shape[1] * scale))))
    probe = Layout(scale, 0, size)
    lines: list[list[tuple[str, BGR]]] = []
    backgrounds: list[BGR] = []
    if demo_warning:
        lines.append([(demo_warning, WHITE)])
        backgrounds.append(DEMO_BACKGROUND)
    lines += [[(decision, WHITE)], legend()]
    backgrounds += [HEADER_BACKGROUND, HEADER_BACKGROUND]
    header = _header(size[1], lines, backgrounds, probe.text_scale)
    layout = Layout(scale, len(header), size)
    image = cv2.cvtColor(to_gray8(pixels, size), cv2.COLOR_GRAY2BGR)
    canvas = np.concatenate([header, image])
    for mark in marks:
        _blend_in_box(canvas, mark, layout)
    for mark in marks:  # outlines and labels last, so no heatmap covers them
        span = layout.box_span(mark.box)
        _outline(canvas, span, layout.line_width, mark.colour, layout.top)
        _label(canvas, mark, span, layout)
    return canvas, layout


def cut_region(pixels: np.ndarray, region: Sequence[int]) -> np.ndarray:
    """The pixels of a region that may reach past the image, its edge repeated there (as the crops were cut)."""
    height, width = pixels.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in region)
    inside = pixels[max(0, y1) : min(height, y2), max(0, x1) : min(width, x2)]
    pad = (max(0, -y1), max(0, y2 - height), max(0, -x1), max(0, x2 - width))
    return cv2.copyMakeBorder(inside, *pad, borderType=cv2.BORDER_REPLICATE) if any(pad) else inside


def render_heatmap(pixels: np.ndarray, mark: Mark, caption: str, panel: int = HEATMAP_PANEL) -> np.ndarray:
    """The crop as the ensemble saw it, beside the same crop with its whole Grad-CAM; box outlined on both."""
    crop = cut_region(pixels, mark.region)
    gray = cv2.cvtColor(to_gray8(crop, (panel, panel)), cv2.COLOR_GRAY2BGR)
    cam = cv2.resize(np.asarray(mark.cam, np.float32), (panel, panel), interpolation=cv2.INTER_LINEAR)
    heat = blend(gray, cam)
    rx, ry = mark.region[0], mark.region[1]
    sx, sy = panel / (mark.region[2] - rx), panel / (mark.region[3] - ry)
    x0, y0 = int(round((mark.box[0] - rx) * sx)), int(round((mark.box[1] - ry) * sy))
    x1, y1 = int(round((mark.box[2] - rx) * sx)), int(round((mark.box[3] - ry) * sy))
    for picture in (gray, heat):
        cv2.rectangle(picture, (x0, y0), (x1 - 1, y1 - 1), mark.colour, 2)
    body = np.concatenate([gray, np.zeros((panel, 4, 3), np.uint8), heat], axis=1)
    header = _header(body.shape[1], [[(mark.label, mark.colour)], [(caption, WHITE)]], [(0, 0, 0)] * 2, 0.6)
    return np.concatenate([header, body])


def overlay_label(level: str, prediction: str, probability: float) -> str:
    """'L2 fresh 0.81': level, predicted class and its probability."""
    return f"{level} {prediction} {probability:.2f}"


def study_marks(study: StudyResult) -> list[Mark]:
    """One mark per vertebra, from the result as the pipeline computed it (boxes unrounded, regions as cut)."""
    classification = study.classification
    marks = []
    for i, level in enumerate(study.detections.levels):
        predicted = int(classification.predictions[i])
        name = classification.classes[predicted]
        marks.append(
            Mark(
                box=tuple(float(v) for v in study.detections.boxes[i]),  # type: ignore[arg-type]
                region=tuple(int(v) for v in study.regions[i]),  # type: ignore[arg-type]
                cam=classification.cam[i],
                label=overlay_label(level, name, float(classification.probabilities[i, predicted])),
                colour=CLASS_COLOURS.get(name, UNKNOWN_COLOUR),
            )
        )
    return marks


def render_study(study: StudyResult, demo_warning: str | None) -> tuple[np.ndarray, Layout, list[Mark]]:
    """The study's overlay (BGR uint8), its layout and the marks drawn on it."""
    marks = study_marks(study)
    from olvf.runtime.writers.report import verdict_line  # the report module draws on this one's names

    image, layout = render_overlay(
        study.radiograph.pixels,
        marks,
        decision=verdict_line(study, demo_warning is not None),
        demo_warning=demo_warning,
    )
    return image, layout, marks


def encode_png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:  # only for images OpenCV cannot hold, which this module never makes
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()
