"""TensorRT: what can be checked without a GPU is checked here; the rest runs where TensorRT exists."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_gpu_fixture import real_tensorrt_missing

import olvf
from olvf.errors import BackendError, BundleError
from olvf.runtime.bundle import Bundle, open_bundle
from olvf.runtime.manifest import EngineSpec
from olvf.runtime.runners.tensorrt import DeviceFacts, check_engine

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _bundle_with_engine(tiny_bundle: Path, **changes: str) -> tuple[Bundle, EngineSpec]:
    bundle = open_bundle(tiny_bundle)
    spec = EngineSpec(
        role="ensemble",
        file="ensemble_fp16.plan",
        source_graph="ensemble_fp16.onnx",
        source_sha256=bundle.manifest.files["ensemble_fp16.onnx"],
        precision="fp16",
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability="8.7",
    )
    return bundle, dataclasses.replace(spec, **changes)


HERE = DeviceFacts(tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7")


def test_matching_engine_passes(tiny_bundle: Path) -> None:
    bundle, spec = _bundle_with_engine(tiny_bundle)
    check_engine(spec, HERE, bundle)


@pytest.mark.parametrize(
    "here,expected",
    [
        (dataclasses.replace(HERE, tensorrt_version="10.7.0"), "TensorRT 10.3.0, here 10.7.0"),
        (
            DeviceFacts("10.3.0", "NVIDIA GeForce RTX 4090", "8.9"),
            "GPU Orin (compute 8.7), here NVIDIA GeForce RTX 4090 (compute 8.9)",
        ),
    ],
    ids=["tensorrt-version", "gpu"],
)
def test_engine_from_elsewhere_is_refused_before_loading(tiny_bundle: Path, here, expected: str) -> None:
    bundle, spec = _bundle_with_engine(tiny_bundle)
    with pytest.raises(BundleError) as info:
        check_engine(spec, here, bundle)
    message = str(info.value)
    assert expected in message and f"olvf-infer --rebuild-engines --bundle {tiny_bundle}" in message
    assert "\n" not in message


def test_stale_engine_from_an_older_graph_is_refused(tiny_bundle: Path) -> None:
    bundle, spec = _bundle_with_engine(tiny_bundle, source_sha256="0" * 64)
    with pytest.raises(BundleError, match="stale.*--rebuild-engines"):
        check_engine(spec, HERE, bundle)


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_tensorrt_backend_without_tensorrt_says_what_to_install(tiny_bundle: Path) -> None:
    with pytest.raises(BackendError, match="TensorRT is not installed.*olvf\\[tensorrt\\].*JetPack"):
        olvf.load(tiny_bundle, backend="tensorrt")


REAL_TENSORRT_MISSING = real_tensorrt_missing()


@pytest.mark.skipif(REAL_TENSORRT_MISSING is not None, reason=f"needs TensorRT and a GPU: {REAL_TENSORRT_MISSING}")
def test_real_tensorrt_builds_verified_fp16_engines_and_runs_the_cascade(cascade_bundle: Path, tmp_path: Path) -> None:
    """On real hardware: the whole path, FP16 for real (inspector), verified, then one phantom study."""
    from olvf.phantom import make_phantom
    from olvf.runtime.bundle_engines import build_bundle_engines

    bundle = tmp_path / "bundle"
    shutil.copytree(cascade_bundle, bundle)
    manifest = build_bundle_engines(bundle)
    ensemble = next(e for e in manifest.engines if e.role == "ensemble")
    assert ensemble.precision == "fp16" and ensemble.half_layers > 0
    phantom = make_phantom(2, {"L3": "fresh"}, (1250, 1000))
    image = phantom.pixels.astype(np.float32) / phantom.pixels.max()
    with olvf.load(bundle, backend="tensorrt") as rt, olvf.load(bundle, backend="onnxruntime") as reference:
        (got,) = rt.analyse([image])
        (want,) = reference.analyse([image])
    assert len(got.detections) == len(want.detections) == 5
    np.testing.assert_allclose(got.classification.probabilities, want.classification.probabilities, atol=1e-2)
