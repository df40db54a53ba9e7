"""Host-side Grad-CAM: resizing, normalisation, class selection, ensemble fusion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from olvf.runtime.steps.gradcam import bilinear_matrix, fuse_maps, grad_cam, minmax_normalise, resize_maps


@pytest.mark.parametrize("small,large", [(7, 224), (2, 64), (7, 7), (3, 10), (8, 224)])
def test_resize_matches_opencv_and_torch(small: int, large: int) -> None:
    maps = np.random.default_rng(small).random((3, small, small + 1)).astype(np.float32)
    ours = resize_maps(maps, (large, large + 3))
    for i, m in enumerate(maps):
        np.testing.assert_allclose(
            ours[i], cv2.resize(m, (large + 3, large), interpolation=cv2.INTER_LINEAR), atol=1e-5
        )
    theirs = F.interpolate(
        torch.from_numpy(maps)[:, None], size=(large, large + 3), mode="bilinear", align_corners=False
    )
    np.testing.assert_allclose(ours, theirs[:, 0].numpy(), atol=1e-5)


def test_bilinear_rows_are_convex_weights() -> None:
    matrix = bilinear_matrix(224, 7)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
    assert (matrix >= 0).all()


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.floats(-1e3, 1e3), st.floats(1e-3, 1e3))
def test_minmax_normalise_spans_zero_to_one(n: int, h: int, w: int, offset: float, scale: float) -> None:
    maps = (np.random.default_rng(n * h * w).random((n, h, w)) * scale + offset).astype(np.float32)
    out = minmax_normalise(maps)
    assert out.dtype == np.float32 and out.shape == maps.shape
    for m, o in zip(maps, out):
        if m.max() - m.min() > 1e-3 * scale:
            assert o.min() == pytest.approx(0.0, abs=1e-6) and o.max() == pytest.approx(1.0, abs=1e-5)
            assert np.argmax(o) == np.argmax(m)


def test_flat_map_means_no_evidence() -> None:
    out = minmax_normalise(np.full((2, 7, 7), 3.5, np.float32))
    assert (out == 0).all()


def test_grad_cam_takes_the_target_class_and_its_positive_part() -> None:
    class_maps = np.zeros((2, 3, 7, 7), np.float32)
    class_maps[0, 2, 1, 5] = 4.0  # crop 0, class fresh: evidence top right
    class_maps[0, 0, 6, 0] = 9.0  # class normal elsewhere: must not leak in
    class_maps[1, 1] = -1.0  # crop 1, class old: only negative evidence
    class_maps[1, 1, 3, 3] = -0.5
    cams = grad_cam(class_maps, np.array([2, 1]), (224, 224))
    assert cams.shape == (2, 224, 224) and cams.dtype == np.float32
    y, x = np.unravel_index(cams[0].argmax(), cams[0].shape)
    assert (y // 32, x // 32) == (1, 5)
    assert cams[0, 200:, :32].max() == 0.0
    assert (cams[1] == 0).all(), "ReLU removes negative evidence: nothing to show"


def test_fused_map_weighs_models_equally_whatever_their_scale() -> None:
    a = np.zeros((1, 4, 4), np.float32)
    b = np.zeros((1, 4, 4), np.float32)
    a[0, 0, 0] = 1.0
    b[0, 3, 3] = 1.0
    fused = fuse_maps([minmax_normalise(a * 1000), minmax_normalise(b)])
    assert fused[0, 0, 0] == pytest.approx(1.0) and fused[0, 3, 3] == pytest.approx(1.0)
