"""Preprocessing comes from the manifest and matches torchvision's tensor transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from olvf.errors import InputError
from olvf.runtime.bundle.config import Preprocessing
from olvf.runtime.steps.preprocess import Preprocessor

SPEC = Preprocessing(input_size=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.mark.parametrize("shape", [(300, 250), (120, 90), (224, 224)])
def test_matches_torch_resize_and_normalize(shape: tuple[int, int]) -> None:
    """A display-scale crop in [0, 1] becomes exactly what ToTensor + Normalize would feed the network."""
    crop = np.random.default_rng(0).random(shape).astype(np.float32)
    ours = Preprocessor(SPEC)([crop])
    gray = F.interpolate(torch.from_numpy(crop)[None, None], size=(224, 224), mode="bilinear", align_corners=False)
    rgb = gray.expand(-1, 3, -1, -1)
    mean = torch.tensor(SPEC.mean).view(1, 3, 1, 1)
    std = torch.tensor(SPEC.std).view(1, 3, 1, 1)
    np.testing.assert_allclose(ours, ((rgb - mean) / std).numpy(), atol=2e-4)


def test_batch_of_different_sizes_and_dtypes() -> None:
    """8-bit crops are divided by 255 as ToTensor does; float crops are display values already."""
    crops = [np.full((50, 40), 255, np.uint8), np.zeros((300, 200), np.float64), np.full((10, 10), 0.5, np.float32)]
    batch = Preprocessor(SPEC)(crops)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.float32
    mean, std = np.array(SPEC.mean), np.array(SPEC.std)
    np.testing.assert_allclose(batch[0, :, 0, 0], (1.0 - mean) / std, rtol=1e-5)
    np.testing.assert_allclose(batch[1, :, 0, 0], -mean / std, rtol=1e-5)
    np.testing.assert_allclose(batch[2, :, 0, 0], (0.5 - mean) / std, rtol=1e-5)


def test_crops_of_an_unknown_scale_are_refused() -> None:
    """A 16-bit crop could be 0..4095 or 0..65535: guessing would classify garbage without a word."""
    with pytest.raises(InputError, match="crop 0 is uint16"):
        Preprocessor(SPEC)([np.zeros((30, 30), np.uint16)])


def test_manifest_size_and_normalisation_are_used() -> None:
    spec = Preprocessing(input_size=(96, 128), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), interpolation="area")
    batch = Preprocessor(spec)([np.full((400, 400), 255, np.uint8)])
    assert batch.shape == (1, 3, 96, 128)
    np.testing.assert_allclose(batch, 2.0, rtol=1e-6)


def test_empty_crop_is_refused() -> None:
    with pytest.raises(InputError, match="crop 1"):
        Preprocessor(SPEC)([np.zeros((5, 5)), np.zeros((0, 5))])
