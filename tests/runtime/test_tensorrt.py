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
from olvf.runtime.bundle.files import Bundle, open_bundle
from olvf.runtime.bundle.manifest import EngineSpec
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
    from olvf.runtime.checks.engines import build_bundle_engines

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


def test_tensorrt_without_its_libraries_is_not_called_missing(tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """PyPI's tensorrt bindings without NVIDIA's libraries raise this ImportError (seen with the real 10.3 wheel)."""
    import sys

    package = tmp_path / "site" / "tensorrt"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "raise ImportError('libnvinfer.so.10: cannot open shared object file: No such file or directory', "
        "name='tensorrt')\n"
    )
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    with pytest.raises(BackendError) as info:
        olvf.load(tiny_bundle, backend="tensorrt")
    assert str(info.value).startswith(
        "TensorRT is installed but its libraries do not load (libnvinfer.so.10: cannot open shared object file"
    )


@pytest.fixture
def nodes(tmp_path: Path, monkeypatch) -> Path:
    from olvf.runtime.runners.tensorrt import gpu_access

    dev = tmp_path / "dev"
    dev.mkdir()
    monkeypatch.setattr(gpu_access, "DEV", dev)
    monkeypatch.setattr(gpu_access, "JETSON_RELEASE", tmp_path / "nv_tegra_release")
    monkeypatch.setattr(gpu_access, "CONTAINER_MARKERS", (tmp_path / ".dockerenv",))
    return dev


def _blocked(monkeypatch, *paths: Path) -> None:
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) in paths else real(path, mode))


def test_gpu_access_names_the_node_and_the_group_that_block_cuda(nodes: Path, monkeypatch) -> None:
    from olvf.runtime.runners.tensorrt import gpu_access_problem

    (nodes / "nvmap").touch()
    (nodes / "dri").mkdir()
    render = nodes / "dri" / "renderD128"
    render.touch()
    assert gpu_access_problem() is None  # a Jetson whose nodes open
    _blocked(monkeypatch, render)
    problem = gpu_access_problem()
    assert problem is not None and f"cannot open {render}" in problem
    assert f"--group-add {render.stat().st_gid}" in problem and "video and render groups" in problem
    (nodes.parent / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.0")  # an L4T image
    (nodes / "nvmap").unlink()  # started without --runtime nvidia
    assert gpu_access_problem() == (
        f"{nodes / 'nvmap'} is not in this container: start it with --runtime nvidia "
        "(the NVIDIA Container Toolkit must be installed on the Jetson)"
    )


def test_gpu_access_on_a_discrete_gpu(nodes: Path, tmp_path: Path, monkeypatch) -> None:
    from olvf.runtime.runners.tensorrt import gpu_access_problem

    assert gpu_access_problem() is None  # bare metal without the node: nvidia-smi says the rest
    (tmp_path / ".dockerenv").touch()
    assert (
        gpu_access_problem() == "no NVIDIA device is in this container: start it with --gpus all (or --runtime nvidia)"
    )
    (nodes / "nvidiactl").touch()
    _blocked(monkeypatch, nodes / "nvidiactl")
    assert "--group-add" in gpu_access_problem() and "video and render" not in gpu_access_problem()
