"""One study's report: what the cascade found, as data for scripts and as lines for people.

Grad-CAM regions
    Each vertebra's ensemble Grad-CAM map covers its *crop region* (the
    detector box grown by the manifest's margin and squared,
    :func:`olvf.runtime.crops.crop_regions`). Every map pixel belongs, by its
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
    mass: its fractions are ``null``. Which side is anterior cannot be read
    from the pixels: it is ``RegionGeometry.anterior`` (the CLI's
    ``--anterior``, default left: the patient facing left, as lateral films are
    usually displayed and as ``olvf-phantom`` draws them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from olvf.errors import BundleError
from olvf.runtime.crops import CropSettings, crop_regions
from olvf.runtime.manifest import Manifest
from olvf.runtime.session import StudyResult

SCHEMA = "olvf-report/1"
REGIONS = ("centre", "upper_endplate", "lower_endplate", "anterior", "posterior", "outside_box")
SIDES = ("left", "right")
DEMO_WARNING = "DEMO bundle: trained on synthetic phantoms only, not for diagnosis"
CROP_MODE_NOTE = "the bundle has no detector: each image was classified as one vertebral-body crop"


@dataclass(frozen=True)
class RegionGeometry:
    """How a crop's Grad-CAM map is divided; see the module docstring."""

    band: float = 0.2
    anterior: str = "left"
    anterior_source: str = "default: patient facing left (pass --anterior right for films facing right)"

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


@dataclass(frozen=True)
class CamAnalysis:
    """Where each map lies and how its mass divides; arrays over N vertebrae."""

    regions: np.ndarray  # (N, 4) int crop regions, original pixels
    fractions: np.ndarray  # (N, 6) in REGIONS order; NaN rows where a map has no mass
    peaks: np.ndarray  # (N, 2) x, y of each map's maximum, original pixels
    peak_regions: tuple[str, ...]


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


@dataclass(frozen=True)
class ReportContext:
    """What every report of one run shares: bundle, backend, decision rule, region geometry."""

    bundle: dict[str, Any]
    backend: dict[str, Any]
    classes: tuple[str, ...]
    operating_point: float
    geometry: RegionGeometry
    demo: bool
    cascade: bool  # False: no detector, each image is one crop


def operating_point(manifest: Manifest) -> float:
    """The fresh-fracture threshold the bundle was exported with."""
    value = manifest.operating_points.get("fresh")
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise BundleError(
            f"the bundle's manifest has no valid fresh operating point (got {value!r}); re-export the bundle"
        )
    return float(value)


def mri_decision(levels: Sequence[str], fresh: np.ndarray, threshold: float) -> dict[str, Any]:
    """Recommend MRI when any vertebra's fresh probability reaches the operating point.

    Ties go to MRI: in the ER a missed fresh fracture costs more than a scan.
    """
    if len(levels) == 0:
        return {
            "mri_recommended": False,
            "reason": "no vertebral body was found, so nothing was classified; the film needs a reader",
            "levels": [],
            "max_fresh": None,
        }
    best = int(np.argmax(fresh))
    p, level = float(fresh[best]), levels[best]
    over = [lvl for lvl, value in zip(levels, fresh) if value >= threshold]
    if over:
        reason = f"p(fresh) {p:.2f} at {level} is at or over the operating point {threshold:.2f}"
    else:
        reason = f"highest p(fresh) {p:.2f} at {level} is under the operating point {threshold:.2f}"
    return {
        "mri_recommended": bool(over),
        "reason": reason,
        "levels": over,
        "max_fresh": {"level": level, "probability": round(p, 6)},
    }


def _probabilities(classes: Sequence[str], row: np.ndarray) -> dict[str, float]:
    return {name: round(float(value), 6) for name, value in zip(classes, row)}


def _coords(values: np.ndarray, digits: int = 1) -> list[float]:
    return [round(float(v), digits) for v in values]


def heatmap_name(level: str) -> str:
    return f"{level}_gradcam.png"


def vertebra_reports(study: StudyResult, cams: CamAnalysis, context: ReportContext) -> list[dict[str, Any]]:
    detections, result = study.detections, study.classification
    classes = context.classes
    rows = []
    for i, level in enumerate(detections.levels):
        fractions = cams.fractions[i]
        rows.append(
            {
                "level": level,
                "box": _coords(detections.boxes[i]),
                "detector_score": round(float(detections.scores[i]), 6) if context.cascade else None,
                "probabilities": _probabilities(classes, result.probabilities[i]),
                "models": {
                    name: _probabilities(classes, probs[i]) for name, probs in result.model_probabilities.items()
                },
                "prediction": classes[int(result.predictions[i])],
                "gradcam": {
                    "image": heatmap_name(level),
                    "target": classes[int(result.target[i])],
                    "crop_region": [int(v) for v in cams.regions[i]],
                    "peak": _coords(cams.peaks[i]),
                    "peak_region": cams.peak_regions[i],
                    "regions": None
                    if np.isnan(fractions).any()
                    else {name: round(float(f), 4) for name, f in zip(REGIONS, fractions)},
                },
            }
        )
    return rows


def study_regions(study: StudyResult, crops: CropSettings, cascade: bool) -> np.ndarray:
    """Where each crop was cut from: the grown, squared box, or the box itself for whole-image crops."""
    if not cascade:
        return np.rint(study.detections.boxes).astype(np.int64)
    return crop_regions(study.detections.boxes, crops)


def build_report(
    study: StudyResult,
    cams: CamAnalysis,
    context: ReportContext,
) -> dict[str, Any]:
    """report.json of one study (plain JSON types only), less ``overlay`` and ``timings_ms``.

    Those two are known only once the images are drawn; :func:`finish_report` adds them.
    """
    info = study.radiograph.to_dict()
    info["size"] = [study.radiograph.columns, study.radiograph.rows]  # [width, height]: the frame of every box
    fresh = study.classification.probabilities[:, context.classes.index("fresh")]
    decision = mri_decision(study.detections.levels, fresh, context.operating_point)
    report: dict[str, Any] = {"schema": SCHEMA}
    if context.demo:
        report["warning"] = DEMO_WARNING  # first, where nobody can miss it
    report.update(
        {
            "mode": "cascade" if context.cascade else "crop",
            "mri_recommended": decision["mri_recommended"],
            "mri_reason": decision["reason"],
            "mri_levels": decision["levels"],
            "max_fresh": decision["max_fresh"],
            "operating_point": {"fresh": context.operating_point},
            "input": info,
            "bundle": dict(context.bundle),
            "backend": dict(context.backend),
            "detection": {
                "count": len(study.detections),
                "level_rule": study.detections.level_rule,
                "notes": list(study.detections.notes) if context.cascade else [CROP_MODE_NOTE],
            },
            "gradcam_regions": context.geometry.to_dict(),
            "vertebrae": vertebra_reports(study, cams, context),
        }
    )
    return report


def finish_report(
    report: Mapping[str, Any],
    *,
    overlay: Mapping[str, Any],
    timings_ms: Mapping[str, float | None],
    shared_by: int,
) -> dict[str, Any]:
    """The report with where the overlay is and how long each stage took.

    ``shared_by``: how many studies shared the detector and ensemble calls,
    whose time each study reports as its share.
    """
    timings = {key: None if value is None else round(float(value), 2) for key, value in timings_ms.items()}
    return {**report, "overlay": dict(overlay), "timings_ms": timings, "timings_shared_by": shared_by}


# --- for people -----------------------------------------------------------------


def summary_lines(report: Mapping[str, Any], name: str, folder: str) -> list[str]:
    """A short table of one study for the terminal; only the file name, never patient data."""
    lines = [f"{name}  ->  {folder}/overlay.png"]
    if report["mode"] == "crop":
        lines.append(f"  ({CROP_MODE_NOTE})")
    vertebrae = report["vertebrae"]
    if vertebrae:
        lines.append(f"  {'level':6s} {'class':7s} {'p(fresh)':>8s} {'p(class)':>8s}  Grad-CAM peak")
        for v in vertebrae:
            p = v["probabilities"]
            lines.append(
                f"  {v['level']:6s} {v['prediction']:7s} {p['fresh']:8.2f} {p[v['prediction']]:8.2f}  "
                f"{v['gradcam']['peak_region'].replace('_', ' ')}"
            )
    else:
        lines.append(f"  no vertebral body found ({report['detection']['level_rule']})")
    verdict = "MRI recommended" if report["mri_recommended"] else "MRI not indicated by olvf"
    lines.append(f"  {verdict}: {report['mri_reason']}")
    return lines


def overlay_label(level: str, prediction: str, probability: float) -> str:
    """'L2 fresh 0.81': level, predicted class and its probability."""
    return f"{level} {prediction} {probability:.2f}"


def decision_line(report: Mapping[str, Any]) -> str:
    verdict = "MRI recommended" if report["mri_recommended"] else "MRI not indicated by olvf"
    return f"{verdict}: {report['mri_reason']}"
