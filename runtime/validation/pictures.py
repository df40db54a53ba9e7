"""Validation pictures drawn with OpenCV (no plotting library at run time): ROC curves and the confusion matrix.

ROC: false positive rate across, sensitivity up, every route's curve in its own colour with its AUC in the legend,
the chance diagonal dashed, and each route's decision point (the argmax decision for fracture vs normal, the operating
point for fresh vs rest) marked with a ring. Confusion matrix: rows the labelled class, columns the predicted class,
each cell shaded by its share of the row and showing the count and that share.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from olvf.runtime.validation.metrics import BinaryFigures, ConfusionMatrix

BGR = tuple[int, int, int]
ROUTE_COLOURS: tuple[BGR, ...] = ((180, 90, 20), (30, 120, 240), (40, 160, 40), (160, 40, 160), (40, 40, 200))
FONT = cv2.FONT_HERSHEY_SIMPLEX
INK: BGR = (30, 30, 30)
GRID: BGR = (225, 225, 225)
WHITE: BGR = (255, 255, 255)


def _text(
    img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5, colour: BGR = INK, bold: int = 1
) -> None:
    cv2.putText(img, text.encode("ascii", "replace").decode(), org, FONT, scale, colour, bold, cv2.LINE_AA)


def _centred(img: np.ndarray, text: str, centre: tuple[int, int], scale: float, colour: BGR = INK, bold: int = 1):
    (w, h), _ = cv2.getTextSize(text, FONT, scale, bold)
    _text(img, text, (int(centre[0] - w / 2), int(centre[1] + h / 2)), scale, colour, bold)


def draw_roc(title: str, curves: Mapping[str, BinaryFigures], size: int = 640) -> np.ndarray:
    """A BGR picture of each route's ROC curve for one task; routes without a curve (one class absent) are noted."""
    img = np.full((size, size, 3), 255, np.uint8)
    left, top, right, bottom = 70, 50, size - 20, size - 60
    span_x, span_y = right - left, bottom - top

    def at(fpr: float, tpr: float) -> tuple[int, int]:
        return int(round(left + fpr * span_x)), int(round(bottom - tpr * span_y))

    for tick in np.linspace(0, 1, 6):
        x, y = at(float(tick), float(tick))
        cv2.line(img, (x, top), (x, bottom), GRID, 1)
        cv2.line(img, (left, y), (right, y), GRID, 1)
        _centred(img, f"{tick:.1f}", (x, bottom + 14), 0.42)
        _centred(img, f"{tick:.1f}", (left - 22, y), 0.42)
    for k in range(20):  # the chance diagonal, dashed
        a, b = k / 20, (k + 0.5) / 20
        cv2.line(img, at(a, a), at(b, b), (170, 170, 170), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (right, bottom), INK, 1)
    _centred(img, title, (size // 2, 22), 0.6, bold=1)
    _centred(img, "1 - specificity (false positive rate)", ((left + right) // 2, size - 18), 0.48)
    label = np.full((24, span_y), 255, np.uint8)
    _centred(label, "sensitivity", (span_y // 2, 11), 0.48, colour=(30,))  # type: ignore[arg-type]
    img[top:bottom, 6:30] = cv2.cvtColor(cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE), cv2.COLOR_GRAY2BGR)

    legend_y = bottom - 12 - 20 * (len(curves) - 1)
    _text(img, "o = each route's decision point", (left + span_x // 3, legend_y - 22), 0.42)
    for i, (route, figures) in enumerate(curves.items()):
        colour = ROUTE_COLOURS[i % len(ROUTE_COLOURS)]
        y = legend_y + 20 * i
        if figures.roc is None:
            _text(img, f"{route}: no curve ({figures.auc.undefined})", (left + span_x // 3, y), 0.45, colour)
            continue
        points = np.array([at(f, t) for f, t in zip(figures.roc.fpr, figures.roc.tpr)], np.int32)
        cv2.polylines(img, [points], False, colour, 2, cv2.LINE_AA)
        sens, spec = figures.sensitivity.value, figures.specificity.value
        if sens is not None and spec is not None:
            cv2.circle(img, at(1.0 - spec, sens), 7, colour, 2, cv2.LINE_AA)
        auc = figures.auc.value
        _text(img, f"{route}: AUC {auc:.3f}" if auc is not None else route, (left + span_x // 3, y), 0.45, colour)
    return img


def draw_confusion(title: str, matrix: ConfusionMatrix, cell: int = 130) -> np.ndarray:
    """A BGR picture of the confusion matrix; the cells are shaded by their share of the row."""
    k = len(matrix.classes)
    left, top = 120, 80
    img = np.full((top + k * cell + 50, left + k * cell + 30, 3), 255, np.uint8)
    counts = np.array(matrix.counts, np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    for i in range(k):
        for j in range(k):
            x0, y0 = left + j * cell, top + i * cell
            shade = int(round(255 - 200 * share[i, j]))
            colour = (255, shade, shade) if i != j else (shade, 255, shade)
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), colour, -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), INK, 1)
            _centred(img, str(int(counts[i, j])), (x0 + cell // 2, y0 + cell // 2 - 10), 0.8, bold=2)
            _centred(img, f"{100 * share[i, j]:.1f}%", (x0 + cell // 2, y0 + cell // 2 + 22), 0.5)
            if j == 0 and matrix.missed[i]:
                _centred(img, f"{matrix.missed[i]} missed", (x0 + cell // 2, y0 + cell - 12), 0.42, (0, 0, 180))
        _centred(img, matrix.classes[i], (left - 55, top + i * cell + cell // 2), 0.6)
        _centred(img, matrix.classes[i], (left + i * cell + cell // 2, top - 14), 0.6)
    _centred(img, title, (img.shape[1] // 2, 20), 0.6)
    _centred(img, "predicted (argmax)", (left + k * cell // 2, 46), 0.5)
    _text(img, "labelled", (8, top - 14), 0.5)
    _text(img, "missed vertebrae count as normal", (left, top + k * cell + 30), 0.45)
    return img


def encode_png(img: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return data.tobytes()
