"""Pictures for people: the radiograph with every vertebra's box, state and Grad-CAM, and one heatmap per vertebra.

What the picture says comes from the decision (:mod:`olvf.runtime.steps.decision`), never from a rule of its own:
each vertebra is drawn in its state's one colour (suspected fresh fracture red, old amber, normal green; no other
box has a finding's colour), labelled with its level, its state and its p(fresh), the number the MRI rule uses;
the header names every MRI level in clinical words. ``render_overlay`` draws, on the radiograph fitted to at most
1600 px (and enlarged to 800 px high when smaller, so labels stay legible):

- a header band: the demo warning on red for demo bundles, the verdict in clinical words, the verdict's detail
  line and a legend, each wrapped onto as many lines as the width needs at one legible text size (never shrunk
  below it, so the legend is whole and the verdict never smaller than the legend); the radiograph sits below;
- Grad-CAM as a secondary layer, only where a finding is (suspected fresh or old) and of that finding's class,
  **inside its box only**, in a navy-to-cyan ramp that shares no hue with a box colour, and no more opaque than
  the finding is probable: a faint finding has faint heat, and a normal vertebra none;
- the box outline, just outside the box, in its state colour, and a label such as
  ``L2 suspected fresh 0.81`` beside it (the number is always p(fresh)).

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

from olvf.runtime.steps.decision import NORMAL, OLD, STATE_CLASS, SUSPECTED_FRESH, compared
from olvf.runtime.study.results import StudyResult

BGR = tuple[int, int, int]
#: One colour per state, and no state's colour in the heat ramp.
STATE_COLOURS: dict[str, BGR] = {SUSPECTED_FRESH: (0, 0, 255), OLD: (0, 190, 255), NORMAL: (0, 200, 0)}
UNKNOWN_COLOUR: BGR = (255, 255, 255)
#: Grad-CAM's ramp: navy, through blue, to cyan (BGR), blended only inside finding boxes. No red, amber or
#: green (the states' colours) and no white or gray (the film's own), so the heat is never read as a finding.
HEAT_RAMP: tuple[BGR, ...] = ((120, 20, 20), (255, 80, 0), (255, 200, 0), (255, 255, 0))
DEMO_BACKGROUND: BGR = (0, 0, 190)
HEADER_BACKGROUND: BGR = (40, 40, 40)
WHITE: BGR = (255, 255, 255)
MAX_SIDE = 1600
MIN_HEIGHT = 800
HEAT_ALPHA = 0.55  # at the map's maximum; the gray shows through everywhere
HEATMAP_PANEL = 320
FONT = cv2.FONT_HERSHEY_DUPLEX
MIN_TEXT_SCALE = 0.5  # Hershey at 0.5 is about 11 px high: the smallest header text drawn, whatever the width


@dataclass(frozen=True)
class Mark:
    """One vertebra to draw: its box and crop region (original pixels), map, label and colour.

    ``heat``: how opaque its Grad-CAM may be, 0 (not drawn: no finding) to 1; ``shows``: the class its map is of.
    """

    box: tuple[float, float, float, float]
    region: tuple[int, int, int, int]
    cam: np.ndarray
    label: str
    colour: BGR
    heat: float = 1.0
    shows: str = ""


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
    """:data:`HEAT_RAMP` colours (..., 3) BGR float32 for a map in [0, 1], linear between the ramp's stops."""
    stops = np.asarray(HEAT_RAMP, np.float32)
    position = np.clip(np.asarray(cam, np.float32), 0.0, 1.0) * (len(stops) - 1)
    low = np.minimum(position.astype(np.int64), len(stops) - 2)
    frac = (position - low)[..., None]
    return stops[low] * (1.0 - frac) + stops[low + 1] * frac


def blend(base: np.ndarray, cam: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Base (H, W, 3) uint8 with the map's colours, in proportion to the map and ``strength`` (0: unchanged)."""
    alpha = (HEAT_ALPHA * float(np.clip(strength, 0.0, 1.0)) * np.clip(cam, 0.0, 1.0))[..., None]
    out = base.astype(np.float32) * (1.0 - alpha) + heat_colours(cam) * alpha
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
    if mark.heat <= 0:
        return
    x0, y0, x1, y1 = layout.box_span(mark.box)
    x0, x1 = max(x0, 0), min(x1, canvas.shape[1])
    y0, y1 = max(y0, layout.top), min(y1, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    xs = (np.arange(x0, x1) + 0.5) / layout.scale
    ys = (np.arange(y0 - layout.top, y1 - layout.top) + 0.5) / layout.scale
    cam = sample_cam(mark.cam, mark.region, xs, ys)
    canvas[y0:y1, x0:x1] = blend(canvas[y0:y1, x0:x1], cam, mark.heat)


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


Segment = tuple[str, BGR]


@dataclass(frozen=True)
class PlacedText:
    """One run of header text as drawn: its text, colour, origin (x, baseline) and pixel box (x0, y0, x1, y1)."""

    text: str
    colour: BGR
    origin: tuple[int, int]
    box: tuple[int, int, int, int]
    scale: float


def _words(segments: Sequence[Segment]) -> list[list[Segment]]:
    """The text cut into words, the units a line may break between; a word keeps the colours of its pieces
    ("normal" in green then ";" in white is one word, drawn without a gap)."""
    words: list[list[Segment]] = [[]]
    for text, colour in segments:
        for i, piece in enumerate(text.replace("\n", " ").split(" ")):
            if i > 0 and words[-1]:
                words.append([])
            if piece:
                words[-1].append((piece, colour))
    return [w for w in words if w]


def header_layout(
    width: int, lines: Sequence[Sequence[Segment]], backgrounds: Sequence[BGR], scales: Sequence[float]
) -> tuple[int, list[tuple[int, int, BGR]], list[PlacedText]]:
    """Where header text goes: (height, bands (y0, y1, background), texts).

    Each line is drawn at its own scale (never under MIN_TEXT_SCALE) and wrapped between words onto as many rows
    as the width needs, so nothing is cut off and nothing shrinks to fit. A word wider than the whole width (a
    long file name, say) is drawn at the smallest scale it needs, down to MIN_TEXT_SCALE.
    """
    margin = 12
    usable = max(1, width - 2 * margin)
    y = 0
    bands: list[tuple[int, int, BGR]] = []
    placed: list[PlacedText] = []
    for segments, background, wanted in zip(lines, backgrounds, scales):
        scale = max(MIN_TEXT_SCALE, wanted)
        thickness = max(1, int(round(2 * scale)))
        row_height = int(round(44 * scale))
        space = cv2.getTextSize(" ", FONT, scale, thickness)[0][0]
        top = y
        rows: list[list[tuple[list[Segment], float, int]]] = [[]]
        x = 0
        for word in _words(segments):
            w = sum(cv2.getTextSize(t, FONT, scale, thickness)[0][0] for t, _ in word)
            fitted = scale if w <= usable else max(MIN_TEXT_SCALE, scale * usable / w)
            w = sum(cv2.getTextSize(t, FONT, fitted, thickness)[0][0] for t, _ in word)
            if rows[-1] and x + space + w > usable:
                rows.append([])
                x = 0
            x += (space if rows[-1] else 0) + w
            rows[-1].append((word, fitted, w))
        for row in rows:
            x = margin
            baseline = y + (row_height + cv2.getTextSize("Ag", FONT, scale, thickness)[0][1]) // 2
            for word, fitted, _width in row:
                for text, colour in word:
                    (tw, th), base = cv2.getTextSize(text, FONT, fitted, thickness)
                    box = (x, baseline - th, x + tw, baseline + base)
                    placed.append(PlacedText(text, colour, (x, baseline), box, fitted))
                    x += tw
                x += space
            y += row_height
        bands.append((top, y, background))
    return y, bands, placed


def _header(
    width: int, lines: Sequence[Sequence[Segment]], backgrounds: Sequence[BGR], scales: Sequence[float]
) -> np.ndarray:
    """Bands of wrapped text, one band per line (see :func:`header_layout`)."""
    height, bands, placed = header_layout(width, lines, backgrounds, scales)
    band = np.zeros((height, width, 3), np.uint8)
    for y0, y1, background in bands:
        band[y0:y1] = background
    for text in placed:
        thickness = max(1, int(round(2 * text.scale)))
        cv2.putText(band, text.text, text.origin, FONT, text.scale, text.colour, thickness, cv2.LINE_AA)
    return band


def legend(operating_point: float | None = None) -> list[Segment]:
    """The header's key to the picture: one colour per state, what the number is, what the heat is."""
    rule = f" (p(fresh) {compared(operating_point, operating_point)[1]} or more)" if operating_point is not None else ""
    return [
        ("box: ", WHITE),
        (f"{SUSPECTED_FRESH} fracture{rule}", STATE_COLOURS[SUSPECTED_FRESH]),
        (" / ", WHITE),
        (OLD, STATE_COLOURS[OLD]),
        (" / ", WHITE),
        (NORMAL, STATE_COLOURS[NORMAL]),
        ("; number: p(fresh); blue-cyan inside a finding's box: its Grad-CAM, fainter when less probable", WHITE),
    ]


def header_lines(
    text: float, decision: str, demo_warning: str | None, headline: str | None, operating_point: float | None
) -> tuple[list[list[Segment]], list[BGR], list[float]]:
    """The overlay header's lines, backgrounds and text scales: DEMO, the headline, its detail line, the legend.

    The verdict is never drawn smaller than the legend: the headline is the largest text, its detail line and the
    legend share one scale.
    """
    lines: list[list[Segment]] = []
    backgrounds: list[BGR] = []
    scales: list[float] = []
    if demo_warning:
        lines.append([(demo_warning, WHITE)])
        backgrounds.append(DEMO_BACKGROUND)
        scales.append(text)
    if headline:
        lines.append([(headline, WHITE)])
        backgrounds.append(HEADER_BACKGROUND)
        scales.append(text * 1.15)
    small = text * 0.85 if headline else text
    lines += [[(decision, WHITE)], legend(operating_point)]
    backgrounds += [HEADER_BACKGROUND, HEADER_BACKGROUND]
    scales += [small, min(small, text * 0.85)]
    return lines, backgrounds, scales


def render_overlay(
    pixels: np.ndarray,
    marks: Sequence[Mark],
    *,
    decision: str,
    demo_warning: str | None,
    headline: str | None = None,
    operating_point: float | None = None,
) -> tuple[np.ndarray, Layout]:
    """The overlay (BGR uint8) of a [0, 1] radiograph and where its pixels went.

    ``headline``: the verdict in clinical words, drawn largest; ``decision``: its detail line.
    """
    scale = fit_scale(pixels.shape)
    size = (max(1, int(round(pixels.shape[0] * scale))), max(1, int(round(pixels.shape[1] * scale))))
    lines, backgrounds, scales = header_lines(
        Layout(scale, 0, size).text_scale, decision, demo_warning, headline, operating_point
    )
    header = _header(size[1], lines, backgrounds, scales)
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


def render_heatmap(
    pixels: np.ndarray, mark: Mark, caption: str, panel: int = HEATMAP_PANEL, demo_warning: str | None = None
) -> np.ndarray:
    """The crop as the ensemble saw it, beside the same crop with its whole Grad-CAM; box outlined on both.

    The header says the vertebra's state (in its colour), which class the map shows (``caption``), and DEMO
    for a demo bundle: this is the picture most easily pasted on its own.
    """
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
    lines: list[list[Segment]] = [[(mark.label, mark.colour)], [(caption, WHITE)]]
    backgrounds: list[BGR] = [(0, 0, 0), (0, 0, 0)]
    if demo_warning:
        lines.insert(0, [(demo_warning, WHITE)])
        backgrounds.insert(0, DEMO_BACKGROUND)
    header = _header(body.shape[1], lines, backgrounds, [0.6] * len(lines))
    return np.concatenate([header, body])


def overlay_label(level: str, state: str, p_fresh: float, operating_point: float) -> str:
    """'L2 suspected fresh 0.81': level, what it is shown as, and its p(fresh) (printed so that its order against
    the operating point reads right: 0.309 is never shown as 0.31 beside a threshold of 0.31)."""
    return f"{level} {state} {compared(p_fresh, operating_point)[0]}"


def study_marks(study: StudyResult) -> list[Mark]:
    """One mark per vertebra, from the result as the pipeline computed it (boxes unrounded, regions as cut).

    The state, colour, label and heat of each come from the study's decision, the rule of the MRI call.
    """
    classification = study.classification
    classes = classification.classes
    fresh = classes.index("fresh")
    states = study.decision.states
    assert len(states) == len(study.detections), "a classified study's decision holds each vertebra's state"
    marks = []
    for i, (level, state) in enumerate(zip(study.detections.levels, states)):
        shown = STATE_CLASS[state]
        probability = float(classification.probabilities[i, classes.index(shown)])
        marks.append(
            Mark(
                box=tuple(float(v) for v in study.detections.boxes[i]),  # type: ignore[arg-type]
                region=tuple(int(v) for v in study.regions[i]),  # type: ignore[arg-type]
                cam=classification.cam[i],
                label=overlay_label(
                    level, state, float(classification.probabilities[i, fresh]), study.decision.operating_point
                ),
                colour=STATE_COLOURS.get(state, UNKNOWN_COLOUR),
                heat=0.0 if state == NORMAL else probability,
                shows=classes[int(classification.target[i])],
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
        headline=study.decision.headline,
        operating_point=study.decision.operating_point if study.assessed else None,
    )
    return image, layout, marks


def encode_png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:  # only for images OpenCV cannot hold, which this module never makes
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()
