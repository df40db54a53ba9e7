"""Where a Grad-CAM map lies and how its mass divides between the vertebra's regions."""

from __future__ import annotations

import numpy as np
import pytest

from olvf.runtime.steps.regions import REGIONS, RegionGeometry, analyse_cams, pixel_centres

# A 100 x 100 map over the region (0, 0)-(100, 100): map pixel (i, j) is centred at (j + 0.5, i + 0.5).
REGION = np.array([[0, 0, 100, 100]])
# Box 80 x 80 with 20 % bands of 16 px: endplates y 10-26 and 74-90, walls x 10-26 and 74-90.
BOX = np.array([[10.0, 10.0, 90.0, 90.0]])


def hot(rows: slice, cols: slice, size: int = 100) -> np.ndarray:
    cam = np.zeros((1, size, size), np.float32)
    cam[0, rows, cols] = 1.0
    return cam


@pytest.mark.parametrize(
    "rows,cols,left_region,right_region",
    [
        (slice(40, 60), slice(12, 20), "anterior", "posterior"),  # the left wall
        (slice(40, 60), slice(80, 88), "posterior", "anterior"),  # the right wall
        (slice(12, 20), slice(40, 60), "upper_endplate", "upper_endplate"),
        (slice(80, 88), slice(40, 60), "lower_endplate", "lower_endplate"),
        (slice(12, 20), slice(12, 20), "upper_endplate", "upper_endplate"),  # corners belong to the endplates
        (slice(40, 60), slice(40, 60), "centre", "centre"),
        (slice(40, 60), slice(2, 6), "outside_box", "outside_box"),  # the crop's margin
        (slice(94, 98), slice(40, 60), "outside_box", "outside_box"),
    ],
)
def test_a_map_inside_one_region_puts_all_its_mass_there(rows, cols, left_region, right_region) -> None:
    for side, expected in (("left", left_region), ("right", right_region)):
        result = analyse_cams(hot(rows, cols), BOX, REGION, RegionGeometry(anterior=side))
        fractions = dict(zip(REGIONS, result.fractions[0]))
        assert fractions[expected] == pytest.approx(1.0), (side, fractions)
        assert result.peak_regions == (expected,)


def test_band_edges_follow_the_box_not_the_crop() -> None:
    # Columns 25 and 26 straddle the anterior band's inner edge at x = 10 + 0.2 * 80 = 26.
    result = analyse_cams(hot(slice(40, 60), slice(25, 27)), BOX, REGION, RegionGeometry())
    fractions = dict(zip(REGIONS, result.fractions[0]))
    assert fractions["anterior"] == pytest.approx(0.5) and fractions["centre"] == pytest.approx(0.5)


def test_fractions_partition_any_map() -> None:
    rng = np.random.default_rng(0)
    cams = rng.random((6, 7, 7)).astype(np.float32) ** 3
    boxes = np.array([[100, 200, 160, 250]] * 6, float) + rng.uniform(-5, 5, (6, 4))
    regions = np.array([[90, 180, 170, 260]] * 6)
    result = analyse_cams(cams, boxes, regions, RegionGeometry())
    assert result.fractions.shape == (6, len(REGIONS))
    assert np.all((result.fractions >= 0) & (result.fractions <= 1))
    np.testing.assert_allclose(result.fractions.sum(axis=1), 1.0, atol=1e-9)


def test_peak_is_in_original_pixels_of_the_crop_region() -> None:
    # A 7 x 7 map over a 140 px region at (300, 500): each map pixel covers 20 px.
    cam = np.zeros((1, 7, 7), np.float32)
    cam[0, 2, 5] = 1.0  # row 2, column 5
    result = analyse_cams(
        cam, np.array([[310.0, 510.0, 430.0, 630.0]]), np.array([[300, 500, 440, 640]]), RegionGeometry()
    )
    np.testing.assert_allclose(result.peaks[0], [300 + 5.5 * 20, 500 + 2.5 * 20])
    xs, ys = pixel_centres(np.array([[300, 500, 440, 640]]), (7, 7))
    assert xs[0, 0] == 310 and ys[0, -1] == 630


def test_a_map_without_evidence_has_no_fractions() -> None:
    result = analyse_cams(np.zeros((1, 8, 8), np.float32), BOX, REGION, RegionGeometry())
    assert np.isnan(result.fractions).all()


def test_no_vertebrae_analyses_to_nothing() -> None:
    result = analyse_cams(np.zeros((0, 8, 8)), np.zeros((0, 4)), np.zeros((0, 4)), RegionGeometry())
    assert result.fractions.shape == (0, len(REGIONS)) and result.peak_regions == ()


def test_region_geometry_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="anterior"):
        RegionGeometry(anterior="front")
    with pytest.raises(ValueError, match="band"):
        RegionGeometry(band=0.5)
