"""The overlay must put each box and heatmap where the vertebra is: checked pixel by pixel on synthetic maps."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from olvf.runtime.steps.decision import OLD, STATES, SUSPECTED_FRESH
from olvf.runtime.writers.overlay import (
    DEMO_BACKGROUND,
    MIN_TEXT_SCALE,
    STATE_COLOURS,
    Layout,
    Mark,
    encode_png,
    fit_scale,
    header_layout,
    header_lines,
    heat_colours,
    render_heatmap,
    render_overlay,
    sample_cam,
)

# A 2000 x 1500 film is shown at 0.8: boxes land at 0.8 x their original pixels, below the header.
SHAPE = (2000, 1500)
SCALE = 0.8
BOX = (601.3, 503.7, 897.2, 801.9)
REGION = (570, 470, 930, 830)  # 360 px square; a 36 x 36 map gives 10 px per map pixel


def coloured(image: np.ndarray) -> np.ndarray:
    """Pixels that are not gray: only heatmaps, outlines, labels and header text have colour."""
    return (image.max(axis=2).astype(int) - image.min(axis=2)) > 0


def top_right_hot() -> np.ndarray:
    cam = np.zeros((36, 36), np.float32)
    cam[:18, 18:] = 1.0  # original x 750..930, y 470..650
    return cam


def draw(
    cam: np.ndarray, colour: tuple[int, int, int] = STATE_COLOURS[SUSPECTED_FRESH], demo: str | None = "DEMO"
) -> tuple:
    pixels = np.full(SHAPE, 0.5, np.float32)
    mark = Mark(BOX, REGION, cam, "L3 fresh 0.81", colour)
    return render_overlay(pixels, [mark], decision="MRI recommended: test", demo_warning=demo)


def test_large_films_shrink_to_1600_and_small_ones_grow_to_800() -> None:
    assert fit_scale(SHAPE) == SCALE
    assert fit_scale((1250, 1000)) == 1.0
    assert fit_scale((256, 256)) == pytest.approx(800 / 256)
    assert fit_scale((1000, 4000)) == pytest.approx(0.4)  # the width limits it


def test_heatmap_lies_inside_the_box_where_the_map_is_hot_and_nowhere_else() -> None:
    image, layout = draw(top_right_hot())
    assert layout.scale == SCALE and image.shape[0] == layout.top + 1600 and image.shape[1] == 1200
    top = layout.top
    colour = coloured(image)
    # The hot part of the map, clipped to the box: x 750..897.2, y 503.7..650, scaled (map blur: 1 map px).
    hx0, hx1 = (round(v * SCALE) for v in (750, 897.2))
    hy0, hy1 = (round(v * SCALE) + top for v in (503.7, 650))
    blur = math.ceil(10 * SCALE) + 1
    assert colour[hy0 + blur : hy1 - blur, hx0 + blur : hx1 - blur].all()
    # Inside the box but away from the hot part: the film's own gray.
    bx0, by0, bx1, by1 = layout.box_span(BOX)
    inside = colour[by0:by1, bx0:bx1].copy()
    inside[max(hy0 - by0 - blur, 0) : hy1 - by0 + blur, hx0 - bx0 - blur :] = False
    assert not inside.any()
    # Outside the box (past its outline): no heat, although the map also covers the crop's margin.
    line = layout.line_width
    assert not colour[top:, : bx0 - line].any()  # left of the box (the label goes right)
    assert not colour[top : by0 - line].any() and not colour[by1 + line :].any()


def test_a_mirrored_or_shifted_map_would_fail() -> None:
    # The same check on the map flipped left-right finds the heat on the other side.
    image, layout = draw(top_right_hot()[:, ::-1].copy())
    colour = coloured(image)
    bx0, by0, bx1, by1 = layout.box_span(BOX)
    middle = (bx0 + bx1) // 2
    assert colour[by0 + 20 : by0 + 60, bx0 + 20 : middle - 20].all()
    assert not colour[by0 + 20 : by0 + 60, middle + 20 : bx1 - 5].any()


@pytest.mark.parametrize("label", STATES)
def test_box_outline_has_the_class_colour_at_the_scaled_box(label: str) -> None:
    image, layout = draw(np.zeros((36, 36), np.float32), STATE_COLOURS[label])
    x1, y1, x2, y2 = (v * SCALE for v in BOX)
    y_mid, x_mid = int((y1 + y2) / 2) + layout.top, int((x1 + x2) / 2)
    expected = STATE_COLOURS[label]
    for x, y in (
        (math.floor(x1) - 2, y_mid),
        (math.ceil(x2) + 1, y_mid),
        (x_mid, math.floor(y1) - 2 + layout.top),
        (x_mid, math.ceil(y2) + 1 + layout.top),
    ):
        assert tuple(image[y, x]) == expected, (x, y)
    # The outline sits outside the box: the box's own edge pixels keep the film's gray.
    bx0, by0, _, _ = layout.box_span(BOX)
    assert tuple(image[y_mid, bx0]) == (128, 128, 128)


def test_demo_banner_is_on_top_only_for_demo_bundles() -> None:
    banner = "DEMO bundle: trained on synthetic phantoms only, not for diagnosis"
    image, layout = draw(np.zeros((36, 36), np.float32), demo=banner)
    assert tuple(image[1, -2]) == DEMO_BACKGROUND and layout.top > 0
    plain, _ = draw(np.zeros((36, 36), np.float32), demo=None)
    assert not (plain[: layout.top] == DEMO_BACKGROUND).all(axis=2).any()


def test_map_resampling_is_exact_where_the_region_matches_the_map() -> None:
    cam = np.random.default_rng(1).random((12, 12)).astype(np.float32)
    centres = np.arange(12) + 0.5 + 40  # pixel centres of a region starting at 40
    np.testing.assert_allclose(sample_cam(cam, (40, 40, 52, 52), centres, centres), cam, atol=1e-6)


def test_heatmap_image_shows_the_crop_plain_and_with_its_map() -> None:
    pixels = np.full(SHAPE, 0.5, np.float32)
    mark = Mark(BOX, REGION, top_right_hot(), "L3 fresh 0.81", STATE_COLOURS[OLD])
    image = render_heatmap(pixels, mark, "Grad-CAM of 'fresh'", panel=200)
    header = image.shape[0] - 200
    plain, heat = image[header:, :200], image[header:, 204:]
    assert not coloured(plain[5:15, 5:15]).any()  # outside the drawn box, no map on the plain panel
    assert coloured(heat[10:90, 110:190]).all() and not coloured(heat[120:175, 25:90]).any()
    assert tuple(plain[100, int((BOX[0] - REGION[0]) * 200 / 360)]) == STATE_COLOURS[OLD]
    assert cv2.imdecode(np.frombuffer(encode_png(image), np.uint8), cv2.IMREAD_COLOR).shape == image.shape


@pytest.mark.parametrize("width", [512, 720, 1000, 2000])
def test_the_whole_header_is_legible_inside_the_picture_at_every_film_width(width: int) -> None:
    """At 720 px the legend was cut off and at 576 px the verdict shrank below it: wrap, never shrink or cut."""
    film = (int(width * 1.25), width)
    scale = fit_scale(film)
    size = (round(film[0] * scale), round(film[1] * scale))
    headline = "Suspected fresh fracture at L3, L4: MRI recommended"
    decision = (
        "DEMO, not for diagnosis | MRI recommended: suspected fresh fracture at L3 (p(fresh) 0.49), "
        "L4 (p(fresh) 1.00), at or over the operating point 0.31"
    )
    lines, backgrounds, scales = header_lines(
        Layout(scale, 0, size).text_scale, decision, "DEMO bundle", headline, 0.31
    )
    height, _, placed = header_layout(size[1], lines, backgrounds, scales)
    for text in placed:
        x0, y0, x1, y1 = text.box
        assert 0 <= x0 and x1 <= size[1] and 0 <= y0 and y1 <= height, (text.text, text.box, size[1])
        assert text.scale >= MIN_TEXT_SCALE
    drawn = "".join(t.text for t in placed)
    for line in lines:  # every word of every line is drawn, the legend's last words included
        assert "".join("".join(s for s, _ in line).split()) in drawn
    legend_scale = max(t.scale for t in placed if t.text == "box:")
    verdict = [t for t in placed if t.text in ("Suspected", "MRI")]
    assert verdict and min(t.scale for t in verdict) >= legend_scale


def test_a_normal_vertebra_gets_no_heat_and_a_faint_finding_faint_heat() -> None:
    pixels = np.full(SHAPE, 0.5, np.float32)
    hot = np.ones((36, 36), np.float32)
    strong = Mark(BOX, REGION, hot, "L3 suspected fresh 0.90", STATE_COLOURS[SUSPECTED_FRESH], heat=0.9)
    faint = dataclasses.replace(strong, heat=0.35)
    normal = dataclasses.replace(strong, heat=0.0, colour=STATE_COLOURS["normal"])
    drawn = {}
    for name, mark in (("strong", strong), ("faint", faint), ("normal", normal)):
        image, layout = render_overlay(pixels, [mark], decision="x", demo_warning=None)
        bx0, by0, bx1, by1 = layout.box_span(BOX)
        inside = image[by0 + 10 : by1 - 10, bx0 + 10 : bx1 - 10].astype(int)
        drawn[name] = np.abs(inside - 128).sum(axis=2).mean()
    assert drawn["normal"] == 0 and 0 < drawn["faint"] < drawn["strong"]


def test_the_heat_ramp_shares_no_colour_with_a_state_or_the_film() -> None:
    ramp = heat_colours(np.linspace(0, 1, 101, dtype=np.float32)).astype(int)
    for colour in STATE_COLOURS.values():
        assert np.abs(ramp - np.array(colour)).sum(axis=1).min() > 150, colour
    assert (ramp.max(axis=1) - ramp.min(axis=1)).min() > 60  # never gray or white
