"""Where each vertebra's Grad-CAM map lies: the share of its mass in six regions, and its peak.

Each vertebra's ensemble Grad-CAM map covers its *crop region* (the
detector box grown by the manifest's margin and squared,
:func:`olvf.runtime.steps.crops.crop_regions`). Every map pixel belongs, by its
centre in original pixels, to exactly one of six regions defined on the
detector box (width ``w``, height ``h``, band fraction ``b`` = 0.2):

- ``upper_endplate``: inside the box, its top ``b * h`` (whole width, corners included);
- ``lower_endplate``: inside the box, its bottom ``b * h``;
- ``anterior``: inside the box, between the endplate bands, the ``b * w`` on the anterior side;
- ``posterior``: the same on the posterior side;
- ``centre``: inside the box, what the four bands leave (the middle 60 % x 60 %);
- ``outside_box``: the crop's margin around the box (discs, neighbouring endplates).

The fractions are each region's share of the map's total mass (sum of the
map's values), so they sum to 1. A map without positive evidence has no
mass: its fractions are NaN (``null`` in reports). Which side is anterior
cannot be read from the pixels: it is ``RegionGeometry.anterior``, taken from
the file's Patient Orientation (0020,0020) when its row direction says
(:func:`geometry_from_orientation`), else the default left (the patient
facing left, as lateral films are usually displayed and as ``olvf-phantom``
draws them); the CLI's ``--anterior`` overrides both, and
``anterior_source`` records which was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from olvf.vocabulary import REGIONS

SIDES = ("left", "right")
DEFAULT_SOURCE = "default: patient facing left (pass --anterior right for films facing right)"


@dataclass(frozen=True)
class RegionGeometry:
    """How a crop's Grad-CAM map is divided; see the module docstring."""

    band: float = 0.2
    anterior: str = "left"
    anterior_source: str = DEFAULT_SOURCE

    def __post_init__(self) -> None:
        if self.anterior not in SIDES:
            raise ValueError(f"anterior must be one of {', '.join(SIDES)}, got {self.anterior!r}")
        if not 0.0 < self.band < 0.5:
            raise ValueError(f"band must be in (0, 0.5), got {self.band}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "band": self.band,
            "anterior_side": self.anterior,
            "anterior_source": self.anterior_source,
            "definition": (
                "map pixels by their centre: upper/lower_endplate = top/bottom band of the box height (full width); "
                "anterior/posterior = band of the box width on that side, between the endplate bands; "
                "centre = the rest of the box; outside_box = the crop's margin"
            ),
        }


def geometry_from_orientation(orientation: tuple[str, str] | None) -> RegionGeometry:
    """The anterior side from Patient Orientation (0020,0020), else the default, saying which.

    Its first value is the patient direction of the image's rows, left to right:
    ``P`` (posterior) means the patient's back is on the right, so anterior is on
    the left; ``A`` the other way round. A row direction without exactly one of
    them (``L``/``R``: a frontal view, or both) does not say, and the default is
    used with the reason.
    """
    if orientation is None:
        return RegionGeometry(anterior_source=f"{DEFAULT_SOURCE}; the file has no Patient Orientation (0020,0020)")
    row, column = orientation
    shown = f"{row}\\{column}"
    if "A" in row and "P" not in row:
        return RegionGeometry(
            anterior="right", anterior_source=f"Patient Orientation (0020,0020) {shown}: rows run towards anterior"
        )
    if "P" in row and "A" not in row:
        return RegionGeometry(
            anterior="left", anterior_source=f"Patient Orientation (0020,0020) {shown}: rows run towards posterior"
        )
    return RegionGeometry(
        anterior_source=f"{DEFAULT_SOURCE}; Patient Orientation (0020,0020) {shown} does not say (not a lateral view?)"
    )


@dataclass(frozen=True, eq=False)
class CamAnalysis:
    """Where each map lies and how its mass divides; arrays over N vertebrae."""

    regions: np.ndarray  # (N, 4) int crop regions, original pixels
    fractions: np.ndarray  # (N, 6) in REGIONS order; NaN rows where a map has no mass
    peaks: np.ndarray  # (N, 2) x, y of each map's maximum, original pixels
    peak_regions: tuple[str, ...]

    def __getitem__(self, index: slice) -> CamAnalysis:
        """The analysis of a contiguous run of vertebrae (one study's)."""
        return CamAnalysis(self.regions[index], self.fractions[index], self.peaks[index], self.peak_regions[index])


def pixel_centres(regions: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Original-pixel x (N, W) and y (N, H) of each map pixel's centre, the map spanning its region."""
    regions = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    height, width = size
    steps_x = (regions[:, 2] - regions[:, 0]) / width
    steps_y = (regions[:, 3] - regions[:, 1]) / height
    xs = regions[:, :1] + (np.arange(width) + 0.5) * steps_x[:, None]
    ys = regions[:, 1:2] + (np.arange(height) + 0.5) * steps_y[:, None]
    return xs, ys


def region_masks(
    boxes: np.ndarray, xs: np.ndarray, ys: np.ndarray, geometry: RegionGeometry
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each inner region as separable (rows (N, H), columns (N, W)) boolean masks."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = (boxes[:, i : i + 1] for i in range(4))
    band_x, band_y = geometry.band * (x2 - x1), geometry.band * (y2 - y1)
    in_x, in_y = (xs >= x1) & (xs < x2), (ys >= y1) & (ys < y2)
    top, bottom = in_y & (ys < y1 + band_y), in_y & (ys >= y2 - band_y)
    middle_y = in_y & ~top & ~bottom
    left, right = in_x & (xs < x1 + band_x), in_x & (xs >= x2 - band_x)
    middle_x = in_x & ~left & ~right
    anterior, posterior = (left, right) if geometry.anterior == "left" else (right, left)
    return {
        "centre": (middle_y, middle_x),
        "upper_endplate": (top, in_x),
        "lower_endplate": (bottom, in_x),
        "anterior": (middle_y, anterior),
        "posterior": (middle_y, posterior),
    }


def analyse_cams(cams: np.ndarray, boxes: np.ndarray, regions: np.ndarray, geometry: RegionGeometry) -> CamAnalysis:
    """Region fractions and peaks of N maps (N, H, W), vectorised over vertebrae."""
    cams = np.asarray(cams, dtype=np.float64)
    n = len(cams)
    regions = np.asarray(regions, dtype=np.int64).reshape(-1, 4)
    if n == 0:
        return CamAnalysis(regions, np.zeros((0, len(REGIONS))), np.zeros((0, 2)), ())
    xs, ys = pixel_centres(regions, cams.shape[1:])
    masks = region_masks(boxes, xs, ys, geometry)
    total = cams.sum(axis=(1, 2))
    inner = {
        name: np.einsum("nh,nhw,nw->n", rows.astype(np.float64), cams, cols.astype(np.float64))
        for name, (rows, cols) in masks.items()
    }
    masses = np.stack([inner[name] if name in inner else total - sum(inner.values()) for name in REGIONS], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = np.where(total[:, None] > 0, masses / total[:, None], np.nan)
    fractions = np.clip(fractions, 0.0, 1.0)  # the subtraction for outside_box can leave -1e-17
    flat = cams.reshape(n, -1).argmax(axis=1)
    rows_at, cols_at = np.unravel_index(flat, cams.shape[1:])
    index = np.arange(n)
    peaks = np.stack([xs[index, cols_at], ys[index, rows_at]], axis=1)
    peak_regions = []
    for i in range(n):
        inside = [name for name, (r, c) in masks.items() if r[i, rows_at[i]] and c[i, cols_at[i]]]
        peak_regions.append(inside[0] if inside else "outside_box")
    return CamAnalysis(regions, fractions, peaks, tuple(peak_regions))
