"""Grad-CAM from the graph's class maps, without a backward pass.

For a head that is global average pooling followed by a linear layer,
``y_c = b_c + sum_k W[c,k] mean_ij A[k,i,j]``, so ``dy_c/dA[k,i,j] = W[c,k]/(h*w)``
everywhere and Grad-CAM's channel weights are ``W[c,k]/(h*w)``. The graph
therefore exports ``M_c = sum_k W[c,k] A_k`` for every class (a 1x1
convolution with the head's weights) and Grad-CAM for class ``c`` is
``ReLU(M_c)`` up to a positive scale, which min-max normalisation removes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=32)
def bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out_size, in_size) weights of half-pixel bilinear resampling, edges clamped.

    Identical to ``cv2.resize(..., INTER_LINEAR)`` and
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
    when enlarging, which is the only way Grad-CAM maps are resized.
    """
    scale = in_size / out_size
    src = np.clip((np.arange(out_size) + 0.5) * scale - 0.5, 0.0, in_size - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lo), 1.0 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix.astype(np.float32)


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a stack (N, h, w) to (N, H, W) in two matrix products."""
    rows = bilinear_matrix(size[0], maps.shape[1])
    cols = bilinear_matrix(size[1], maps.shape[2])
    return np.einsum("Hh,nhw,Ww->nHW", rows, maps.astype(np.float32, copy=False), cols, optimize=True)


def minmax_normalise(maps: np.ndarray) -> np.ndarray:
    """Scale each map of (N, H, W) to [0, 1]; a flat map (no evidence anywhere) becomes zeros."""
    flat = maps.reshape(len(maps), -1)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    tiny = np.finfo(np.float32).eps * np.maximum(np.abs(low), 1.0)
    scaled = np.where(span > tiny, (flat - low) / np.where(span > tiny, span, 1.0), 0.0)
    return scaled.reshape(maps.shape).astype(np.float32)


def grad_cam(class_maps: np.ndarray, target: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM (N, H, W) in [0, 1] for ``target[n]`` from class maps (N, C, h, w)."""
    chosen = class_maps[np.arange(len(class_maps)), target]
    return minmax_normalise(resize_maps(np.maximum(chosen, 0.0), size))


def fuse_maps(maps: list[np.ndarray]) -> np.ndarray:
    """Ensemble map: the mean of the models' normalised maps, normalised again.

    Each model counts equally whatever the scale of its features, as each
    counts equally in the ensemble's mean of probabilities.
    """
    return minmax_normalise(np.mean(np.stack(maps), axis=0))
