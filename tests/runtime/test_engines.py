"""TensorRT engines in a bundle: build, identify, verify, select; run against the fake TensorRT in tests/fake_gpu.

The fake (see its docstring) runs each "engine" with ONNX Runtime on CPU and
keeps "device" memory in host buffers. What these tests prove is olvf's side:
which graph is built with which flags, what the manifest records, that an
engine joins the bundle only after verification, that a stale or foreign
engine is named and rebuilt, and that the commands do what docs/how-to/tensorrt-jetson.md says.
Real TensorRT runs in tests/runtime/test_tensorrt.py and the conformance suite
where it is installed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_gpu_fixture import use_fake_gpu

import olvf
from olvf.errors import BackendError, BundleError, ParityError
from olvf.export.cli import main as export_main
from olvf.phantom import make_phantom, write_dicom
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.bundle.manifest import MANIFEST_NAME, read_manifest, seal_manifest
from olvf.runtime.checks.engines import build_bundle_engines, describe
from olvf.runtime.cli import main as infer_main


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target)
    return target


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _run(main, args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def device_nodes(tmp_path: Path, monkeypatch) -> Path:
    """An empty /dev and no container markers, whatever machine runs the tests; tests add nodes where they need."""
    from olvf.runtime.runners.tensorrt import gpu_access

    dev = tmp_path / "dev"
    dev.mkdir()
    monkeypatch.setattr(gpu_access, "DEV", dev)
    monkeypatch.setattr(gpu_access, "JETSON_RELEASE", tmp_path / "etc" / "nv_tegra_release")
    monkeypatch.setattr(gpu_access, "CONTAINER_MARKERS", (tmp_path / ".dockerenv",))
    return dev


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("film") / "study.dcm"
    write_dicom(make_phantom(5, {"L2": "fresh"}, (1250, 1000)), path)
    return path


# --- building -------------------------------------------------------------------


def test_tensorrt_10_builds_fp16_engines_from_the_fp32_graphs_and_records_them(
    cascade_bundle: Path, tmp_path: Path, monkeypatch
) -> None:
    use_fake_gpu(monkeypatch, version="10.3.0", gpu="Orin", capability=(8, 7))
    bundle = _copy(cascade_bundle, tmp_path)
    lines: list[str] = []
    manifest = build_bundle_engines(bundle, progress=lines.append)

    engines = {e.role: e for e in manifest.engines}
    assert set(engines) == {"detector", "ensemble"}
    ensemble = engines["ensemble"]
    assert ensemble.source_graph == "ensemble_fp32.onnx"  # the FP16 flag on the FP32 graph
    assert ensemble.source_sha256 == manifest.files["ensemble_fp32.onnx"]
    assert (ensemble.tensorrt_version, ensemble.gpu_name, ensemble.compute_capability) == ("10.3.0", "Orin", "8.7")
    assert ensemble.precision == "fp16" and 0 < ensemble.half_layers <= ensemble.layers
    assert ensemble.profile == {"min": [1, 3, 64, 64], "opt": [4, 3, 64, 64], "max": [4, 3, 64, 64]}
    assert ensemble.file.startswith("ensemble.orin-sm87.") and ensemble.file.endswith(".engine")
    # The engines are hashed like every other file, and their verification figures are kept.
    reopened = open_bundle(bundle)
    assert reopened.manifest == manifest and ensemble.file in manifest.files
    figures = manifest.parity[f"tensorrt:{ensemble.file}"]
    assert figures["ensemble"]["probabilities_max_abs_diff"] <= 1e-2
    assert figures["detector"]["min_matched_iou"] > 0.99
    assert (bundle / "tensorrt-10.3.0-orin-sm87.timing-cache").stat().st_size > 0
    # Progress while building: which graph, the build phases, the result, the verification.
    text = "\n".join(lines)
    assert "building the ensemble engine from ensemble_fp32.onnx for Orin (TensorRT 10.3.0, batch 1..4)" in text
    assert " s  " in text and "layers FP16" in text and "checking the engines against ONNX Runtime" in text


def test_tensorrt_11_builds_strongly_typed_engines_from_the_fp16_graph(
    cascade_bundle: Path, tmp_path: Path, monkeypatch
) -> None:
    use_fake_gpu(monkeypatch, version="11.0.0")
    import tensorrt

    assert not hasattr(tensorrt.BuilderFlag, "FP16")  # the fake is faithful: asking for it would fail
    manifest = build_bundle_engines(_copy(cascade_bundle, tmp_path))
    engines = {e.role: e for e in manifest.engines}
    assert engines["ensemble"].source_graph == "ensemble_fp16.onnx" and engines["ensemble"].precision == "fp16"
    # An ONNX-only detector has no FP16 graph: built as FP32, and the manifest says so.
    assert engines["detector"].source_graph == "detector_fp32.onnx" and engines["detector"].precision == "fp32"


def test_tensorrt_11_needs_the_fp16_graph(tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    use_fake_gpu(monkeypatch, version="11.0.0")
    bundle = _copy(tiny_bundle, tmp_path)
    manifest = read_manifest(bundle)
    raw = json.loads((bundle / MANIFEST_NAME).read_text())
    raw["graphs"] = [g for g in raw["graphs"] if g["precision"] == "fp32"]
    raw["files"].pop("ensemble_fp16.onnx")
    (bundle / MANIFEST_NAME).write_text(seal_manifest(raw))
    assert len(read_manifest(bundle).graphs) == len(manifest.graphs) - 1
    with pytest.raises(BundleError, match="TensorRT 11 builds FP16 engines only from an FP16 graph.*--precision fp16"):
        build_bundle_engines(bundle)


def test_an_engine_that_is_fp32_in_disguise_is_refused(tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    use_fake_gpu(monkeypatch, version="10.3.0")
    import tensorrt

    # What a TensorRT 11 exporter elsewhere did: the FP16 flag silently ignored.
    monkeypatch.setattr(tensorrt.IBuilderConfig, "set_flag", lambda self, flag: None)
    bundle = _copy(tiny_bundle, tmp_path)
    before = _listing(bundle)
    with pytest.raises(ParityError, match="as FP32, not FP16 .*none FP16.*FP32 in disguise"):
        build_bundle_engines(bundle)
    assert _listing(bundle) == before


def test_tensorrt_11_engines_in_spellings_olvf_cannot_read_are_judged_by_their_size(
    cascade_bundle: Path, tmp_path: Path, monkeypatch
) -> None:
    """TensorRT 11's per-layer value strings are undocumented: an FP16 engine must not be refused over them."""
    use_fake_gpu(monkeypatch, version="11.0.0", layer_style="opaque")
    bundle = _copy(cascade_bundle, tmp_path)
    lines: list[str] = []
    manifest = build_bundle_engines(bundle, progress=lines.append)
    engines = {e.role: e for e in manifest.engines}
    assert engines["ensemble"].precision == "fp16" and engines["detector"].precision == "fp32"
    check = manifest.parity[f"tensorrt:{engines['ensemble'].file}"]["precision_check"]
    assert "inspector unreadable here" in check and "'Float16 / kHWC8'" in check and "FP16 weights" in check
    ratio = float(check.split(" = ")[1].split(" of")[0])
    assert 0.4 < ratio < 0.6  # FP16 weights: about half the FP32 graph
    assert "FP16 not shown per layer" in describe(engines["ensemble"])


@pytest.mark.parametrize("style", ["documented", "opaque"])
def test_a_tensorrt_11_engine_that_is_fp32_is_refused_however_its_inspector_spells_it(
    cascade_bundle: Path, tmp_path: Path, monkeypatch, style: str
) -> None:
    """A graph labelled FP16 that is FP32 (what exporters elsewhere fed TensorRT 11): by the inspector, or by size."""
    import dataclasses

    from olvf.runtime.checks import engines as bundle_engines

    use_fake_gpu(monkeypatch, version="11.0.0", layer_style=style)
    real_source = bundle_engines.source_graph

    def mislabelled(manifest, role, plan):
        if role == "ensemble":
            return dataclasses.replace(manifest.graph(role), precision="fp16")
        return real_source(manifest, role, plan)

    monkeypatch.setattr(bundle_engines, "source_graph", mislabelled)
    bundle = _copy(cascade_bundle, tmp_path)
    before = _listing(bundle)
    expected = "all .* float layers are FP32" if style == "documented" else "of the FP32 graph.*FP32 weights"
    with pytest.raises(ParityError, match=f"ensemble_fp32.onnx as FP32, not FP16 .*{expected}.*FP32 in disguise"):
        build_bundle_engines(bundle)
    assert {k: v for k, v in _listing(bundle).items() if not k.endswith(".timing-cache")} == before


def test_an_engine_that_disagrees_with_onnx_runtime_is_not_added(
    cascade_bundle: Path, tmp_path: Path, monkeypatch
) -> None:
    use_fake_gpu(monkeypatch, noise=0.05)
    bundle = _copy(cascade_bundle, tmp_path)
    before = _listing(bundle)
    with pytest.raises(ParityError, match="tensorrt does not reproduce the bundle: probabilities differ.*not added"):
        build_bundle_engines(bundle)
    after = _listing(bundle)
    # Only the timing cache remains: it speeds up the next build and is not part of the verified bundle.
    assert {k: v for k, v in after.items() if not k.endswith(".timing-cache")} == before
    assert not any(name.endswith(".engine") for name in after)


def test_an_interrupted_build_leaves_the_bundle_as_it_was(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    use_fake_gpu(monkeypatch)
    bundle = _copy(cascade_bundle, tmp_path)
    build_bundle_engines(bundle)
    before = _listing(bundle)

    def interrupt(line: str) -> None:
        if "checking the engines" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_bundle_engines(bundle, progress=interrupt)
    assert {k: v for k, v in _listing(bundle).items() if not k.endswith(".timing-cache")} == {
        k: v for k, v in before.items() if not k.endswith(".timing-cache")
    }
    with olvf.load(bundle, backend="tensorrt") as rt:  # the earlier engines still work
        assert rt.backend == "tensorrt"


def test_a_rebuild_replaces_this_machines_engines_and_keeps_other_machines(
    cascade_bundle: Path, tmp_path: Path, monkeypatch
) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch, gpu="Orin", capability=(8, 7))
    first = {e.file for e in build_bundle_engines(bundle).engines}
    use_fake_gpu(monkeypatch, gpu="NVIDIA RTX 4000 Ada Generation", capability=(8, 9))
    both = build_bundle_engines(bundle)
    assert len(both.engines) == 4 and first < {e.file for e in both.engines}
    again = build_bundle_engines(bundle)
    files = {e.file for e in again.engines}
    assert first < files and len(files) == 4 and files != {e.file for e in both.engines}
    assert sorted(p.name for p in bundle.glob("*.engine")) == sorted(files)  # replaced ones were deleted


def test_a_read_only_bundle_says_so(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    use_fake_gpu(monkeypatch)
    bundle = _copy(cascade_bundle, tmp_path)
    # CI runs as root, for whom chmod 555 changes nothing: ask the check itself as an unprivileged user would.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == bundle else real_access(path, mode))
    before = _listing(bundle)
    with pytest.raises(BundleError, match="cannot write engines into .*read-only.*without :ro"):
        build_bundle_engines(bundle)
    assert _listing(bundle) == before


def test_no_gpu_is_one_line(tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    use_fake_gpu(monkeypatch, count=0)
    with pytest.raises(BackendError) as info:
        build_bundle_engines(_copy(tiny_bundle, tmp_path))
    assert str(info.value) == (
        "no usable CUDA GPU here (CUDA says cudaErrorNoDevice): no GPU is visible to this process; "
        "in Docker, start the container with --gpus all (x86) or --runtime nvidia (Jetson)"
    )


# --- identity and selection ----------------------------------------------------------


def test_engines_from_another_gpu_or_tensorrt_are_named_before_loading(
    cascade_bundle: Path, tmp_path: Path, monkeypatch
) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch, version="10.3.0", gpu="Orin", capability=(8, 7))
    build_bundle_engines(bundle)
    use_fake_gpu(monkeypatch, version="10.7.0", gpu="Orin", capability=(8, 7))
    with pytest.raises(BundleError) as info:
        olvf.load(bundle, backend="tensorrt")
    message = str(info.value)
    assert "was built for TensorRT 10.3.0, here 10.7.0" in message
    assert f"olvf-infer --rebuild-engines --bundle {bundle}" in message and "\n" not in message
    use_fake_gpu(monkeypatch, version="10.3.0", gpu="NVIDIA GeForce RTX 4090", capability=(8, 9))
    with pytest.raises(BundleError, match=r"GPU Orin \(compute 8.7\), here NVIDIA GeForce RTX 4090 \(compute 8.9\)"):
        olvf.load(bundle, backend="tensorrt")


def test_an_engine_built_from_an_older_graph_is_stale(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle)
    raw = json.loads((bundle / MANIFEST_NAME).read_text())
    for engine in raw["engines"]:
        engine["source_sha256"] = "0" * 64  # as if the graph had been re-exported since
    (bundle / MANIFEST_NAME).write_text(seal_manifest(raw))
    with pytest.raises(BundleError, match="is stale.*--rebuild-engines"):
        olvf.load(bundle, backend="tensorrt")


def test_auto_prefers_tensorrt_and_says_why_it_did_not(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch, gpu="Orin", capability=(8, 7))
    with olvf.load(bundle, backend="auto") as rt:  # no engines yet
        assert rt.backend == "onnxruntime" and rt.runner.device == "cpu"
        reasons = dict(rt.selection.passed_over)
    assert "has no TensorRT engine for the ensemble" in reasons["TensorRT"]
    assert "--rebuild-engines" in reasons["TensorRT"]
    build_bundle_engines(bundle)
    with olvf.load(bundle, backend="auto") as rt:
        assert (rt.backend, rt.precision, rt.runner.device) == ("tensorrt", "fp16", "cuda:0")
        assert rt.selection.chosen == "TensorRT" and rt.selection.passed_over == ()
    with olvf.load(bundle, backend="auto", precision="fp32") as rt:
        assert rt.backend == "onnxruntime"
        assert "engines are FP16 and --precision fp32 was asked" in dict(rt.selection.passed_over)["TensorRT"]


# --- the runner ---------------------------------------------------------------------


def test_runner_allocates_once_splits_at_the_profile_and_frees_everything(
    cascade_bundle: Path, tmp_path: Path, monkeypatch
) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle, max_batch=2)
    from cuda.bindings import runtime as cudart

    crops = np.random.default_rng(3).standard_normal((5, 3, 64, 64)).astype(np.float32)
    with olvf.load(bundle, backend="tensorrt") as rt, olvf.load(bundle) as reference:
        assert rt.runner.max_batch == 2
        allocated = dict(cudart._stats)
        calls = []
        original = rt.runner.run
        monkeypatch.setattr(rt.runner, "run", lambda feeds: calls.append(len(feeds["crops"])) or original(feeds))
        first = rt.classify(crops)
        second = rt.classify(crops[:1])
        assert calls == [2, 2, 1, 1]
        assert cudart._stats["malloc"] == allocated["malloc"]  # no allocation per call
        assert cudart._stats["malloc_host"] == allocated["malloc_host"]
        want = reference.classify(crops)
        np.testing.assert_allclose(first.probabilities, want.probabilities, atol=1e-2)
        np.testing.assert_allclose(second.probabilities[0], first.probabilities[0], atol=1e-3)
    assert cudart._live_allocations() == 0


# --- the commands -------------------------------------------------------------------


def test_olvf_infer_rebuild_engines_then_runs_on_them(
    cascade_bundle: Path, tmp_path: Path, film: Path, monkeypatch
) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch, gpu="Orin", capability=(8, 7))
    code, out, err = _run(infer_main, ["--rebuild-engines", "--bundle", str(bundle)])
    assert code == 0 and out == ""
    assert "engines verified against ONNX Runtime on CPU and added to" in err
    assert "ensemble: ensemble.orin-sm87." in err and "for Orin sm8.7, TensorRT 10.3.0" in err

    code, out, err = _run(infer_main, ["--bundle", str(bundle), "--out", str(tmp_path / "out"), str(film)])
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "study" / "report.json").read_text())
    backend = report["backend"]
    assert (backend["name"], backend["device"], backend["precision"]) == ("tensorrt", "cuda:0", "fp16")
    assert backend["detector"] == {"name": "tensorrt", "device": "cuda:0", "precision": "fp16"}
    assert backend["why"] == "--backend auto: first choice"
    assert "backend tensorrt on cuda:0 (fp16; --backend auto: first choice)" in out


def test_build_engines_if_needed_builds_once(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    code, _, err = _run(infer_main, ["--build-engines-if-needed", "--bundle", str(bundle)])
    assert code == 0 and "no current TensorRT engines for this machine (detector, ensemble); building them" in err
    built = _listing(bundle)
    code, out, err = _run(infer_main, ["--build-engines-if-needed", "--bundle", str(bundle)])
    assert code == 0 and out == err == "" and _listing(bundle) == built


def test_rebuild_engines_without_tensorrt_says_what_to_install(tiny_bundle: Path) -> None:
    code, out, err = _run(infer_main, ["--rebuild-engines", "--bundle", str(tiny_bundle)])
    assert code == BackendError.exit_code and out == ""
    assert err.startswith("olvf-infer: error: TensorRT is not installed") and "olvf[tensorrt]" in err
    assert err.count("\n") == 1


def test_no_input_and_nothing_to_build_is_an_argument_error(tiny_bundle: Path) -> None:
    code, _, err = _run(infer_main, ["--bundle", str(tiny_bundle)])
    assert code == 2 and "no INPUT given" in err


def test_the_jetson_entrypoint_works_in_a_fresh_process(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """What the container runs on its first start: a new process, the fake on PYTHONPATH like JetPack's TensorRT."""
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch, gpu="Orin", capability=(8, 7))
    command = [sys.executable, "-m", "olvf.runtime.cli", "--bundle", str(bundle), "--build-engines-if-needed"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "building the ensemble engine" in done.stderr
    assert {e.gpu_name for e in read_manifest(bundle).engines} == {"Orin"}


def test_olvf_export_engine_builds_before_publishing(tmp_path: Path, monkeypatch) -> None:
    from detector_fixtures import legacy_yolov5_onnx

    rows = np.zeros((100, 6), np.float32)
    rows[0] = [160, 160, 32, 30, 0.9, 1.0]
    detector = legacy_yolov5_onnx(tmp_path / "det.onnx", rows)
    use_fake_gpu(monkeypatch, gpu="Orin", capability=(8, 7))
    out = tmp_path / "bundle"
    args = ["--detector", str(detector), "--detector-imgsz", "320", "--out", str(out)]
    code, _, err = _run(export_main, [*args, "--engine"])
    assert code == 0, err
    manifest = read_manifest(out)
    assert [e.role for e in manifest.engines] == ["detector"] and manifest.precision == "fp16"
    assert not list(tmp_path.glob(".bundle.*"))  # no staging folder left behind

    # Without --engine it is built anyway where TensorRT and a GPU are present; --no-engine opts out.
    code, _, err = _run(export_main, [*args, "--force", "--no-engine"])
    assert code == 0 and read_manifest(out).engines == ()
    code, _, err = _run(export_main, [*args, "--force"])
    assert code == 0 and len(read_manifest(out).engines) == 1
    assert "TensorRT and a GPU are here: TensorRT engines will be built and verified too (--no-engine skips)" in err

    # A refused engine means no bundle: the one already there stays.
    before = _listing(out)
    use_fake_gpu(monkeypatch, gpu="Orin", capability=(8, 7), noise=50.0)
    code, _, err = _run(export_main, [*args, "--force", "--engine"])
    assert code == ParityError.exit_code and "does not reproduce the bundle" in err
    assert _listing(out) == before


def test_olvf_export_engine_without_a_gpu_fails_before_exporting(tmp_path: Path, monkeypatch) -> None:
    use_fake_gpu(monkeypatch, count=0)
    code, _, err = _run(export_main, ["--demo", "--engine", "--out", str(tmp_path / "b")])
    assert code == BackendError.exit_code and "--engine: no usable CUDA GPU here (CUDA says cudaErrorNoDevice)" in err
    assert not (tmp_path / "b").exists()


def test_olvf_export_verify_reports_every_backend(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    code, out, _ = _run(export_main, ["--verify", str(bundle)])
    assert code == 0
    assert "ONNX Runtime CPU, FP16 graphs: pass  probabilities" in out
    assert "TensorRT engines: skipped: the bundle has no engines" in out
    assert "OpenVINO CPU, FP32 graphs: pass  probabilities" in out or "OpenVINO is not installed" in out

    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle)
    code, out, _ = _run(export_main, ["--verify", str(bundle)])
    assert code == 0 and "TensorRT engines: pass  probabilities" in out and "boxes 5/5" in out

    use_fake_gpu(monkeypatch, noise=0.05)  # the same engines, now disagreeing (a driver update gone wrong)
    code, out, err = _run(export_main, ["--verify", str(bundle)])
    assert code == ParityError.exit_code and "TensorRT engines: fail" in out
    assert "TensorRT engines did not reproduce the bundle" in err


def test_two_starts_at_once_build_once(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """Two containers sharing a bundle on their first start: the second waits, then finds the engines current."""
    import fcntl
    import threading

    from olvf.runtime.checks import engines

    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    lines: list[str] = []
    results: list[object] = []
    held = os.open(bundle, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # the first start, mid-build
        second = threading.Thread(
            target=lambda: results.append(build_bundle_engines(bundle, only_missing=True, progress=lines.append))
        )
        second.start()
        second.join(timeout=2)
        assert second.is_alive() and lines == ["another olvf is building engines into this bundle; waiting for it"]
        # The first start finishes its build while holding the lock.
        import tensorrt

        from olvf.runtime.runners.tensorrt import device_facts

        here = device_facts()
        plan = engines.build_plan(here.tensorrt_version)
        engines._build(
            tensorrt, open_bundle(bundle), here, plan, progress=print, max_batch=None, verify=engines.verify_engines
        )
    finally:
        os.close(held)
    second.join(timeout=120)
    assert results == [None]  # nothing built twice
    assert len(read_manifest(bundle).engines) == 2


# --- failures on the device -----------------------------------------------------------


@pytest.mark.parametrize(
    "cuda_python,said",
    [("12.9.10", "CUDA says cudaErrorInsufficientDriver"), ("12.6.2", "cuda-python: Failed to dlopen libcuda.so.1")],
    ids=["cuda-python-12.9-returns", "cuda-python-12.6-raises"],
)
def test_a_missing_cuda_driver_is_a_reason_not_a_crash(
    cascade_bundle: Path, tmp_path: Path, monkeypatch, cuda_python: str, said: str
) -> None:
    """Docker without the NVIDIA runtime: no libcuda. cuda-python 12.9 returns an error, 12.6 raises."""
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle)
    use_fake_gpu(monkeypatch, cuda_python=cuda_python, driver="missing")
    with olvf.load(bundle, backend="auto") as rt:
        assert rt.backend == "onnxruntime"
        reason = dict(rt.selection.passed_over)["TensorRT"]
    assert reason == (
        f"no usable CUDA GPU here ({said}): the NVIDIA driver is missing or older than this CUDA needs: "
        "check nvidia-smi and update the driver; in Docker, start the container with --gpus all (x86) or "
        "--runtime nvidia (Jetson)"
    )


def test_tensorrt_that_cannot_start_cuda_is_passed_over_by_auto_and_one_line_in_the_cli(
    cascade_bundle: Path, tmp_path: Path, film: Path, monkeypatch
) -> None:
    """cuda-python works but TensorRT's CUDA does not (driver too old): trt.Runtime raises TypeError."""
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle)
    use_fake_gpu(monkeypatch, tensorrt_cuda_error=35)
    with olvf.load(bundle, backend="auto") as rt:
        assert rt.backend == "onnxruntime"
        reason = dict(rt.selection.passed_over)["TensorRT"]
    assert reason.startswith("TensorRT 10.3.0 cannot start (trt.Runtime: createInferRuntime: Error Code 6:")
    assert "CUDA initialization failure with error: 35" in reason and "update the driver" in reason
    code, out, err = _run(
        infer_main, ["--backend", "tensorrt", "--bundle", str(bundle), "--out", str(tmp_path / "o"), str(film)]
    )
    assert code == BackendError.exit_code and out == ""
    assert err.startswith("olvf-infer: error: TensorRT 10.3.0 cannot start") and err.count("\n") == 1
    with pytest.raises(BackendError, match="cannot start .*error: 35"):
        build_bundle_engines(bundle)


def test_one_tensorrt_logger_for_the_whole_process(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """TensorRT keeps the first logger of the process and says so whenever another one is passed."""
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle)  # two builds and a verification
    with olvf.load(bundle, backend="tensorrt"):
        pass
    import tensorrt

    assert not any("differs from one" in message for _, message in tensorrt._log_records)


def test_tensorrt_messages_go_to_stderr_so_json_output_stays_clean(
    cascade_bundle: Path, tmp_path: Path, film: Path, monkeypatch
) -> None:
    """trt.Logger prints to stdout; olvf-infer --json promises the reports and nothing else there."""
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle)
    cache = next(bundle.glob("*.timing-cache"))
    cache.write_bytes(b"not a timing cache")  # TensorRT warns about it at the next build
    args = ["--rebuild-engines", "--bundle", str(bundle), "--json", "--out", str(tmp_path / "o"), str(film)]
    code, out, err = _run(infer_main, args)
    assert code == 0, err
    assert [r["report"]["backend"]["name"] for r in json.loads(out)] == ["tensorrt"]
    assert "TensorRT warning: Timing cache is corrupted" in err


def test_a_refused_tensor_address_or_shape_stops_the_load(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle)
    import tensorrt
    from cuda.bindings import runtime as cudart

    with monkeypatch.context() as patch:
        patch.setattr(tensorrt.IExecutionContext, "set_tensor_address", lambda self, name, memory: False)
        with pytest.raises(BackendError, match="TensorRT refuses the GPU buffer for"):
            olvf.load(bundle, backend="tensorrt")
    assert cudart._live_allocations() == 0
    with monkeypatch.context() as patch:
        patch.setattr(tensorrt.IExecutionContext, "set_input_shape", lambda self, name, shape: False)
        with pytest.raises(BundleError, match="refuses the largest shape .*--rebuild-engines"):
            olvf.load(bundle, backend="tensorrt")
    assert cudart._live_allocations() == 0


def test_a_jetson_user_who_cannot_open_nvmap_is_told_the_group_fix(
    cascade_bundle: Path, tmp_path: Path, film: Path, monkeypatch, device_nodes: Path
) -> None:
    """The container's first start with a user outside the video group: CUDA says 801; the line names the fix."""
    from olvf.runtime.runners.tensorrt import gpu_access

    bundle = _copy(cascade_bundle, tmp_path)
    nvmap = device_nodes / "nvmap"
    nvmap.touch()
    if os.geteuid() == 0:
        os.chown(nvmap, -1, 44)  # the host's video group, as on L4T
    release = gpu_access.JETSON_RELEASE
    release.parent.mkdir(parents=True)
    release.write_text("# R36 (release), REVISION: 4.0")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == nvmap else real_access(path, mode))
    use_fake_gpu(monkeypatch, gpu="Orin", capability=(8, 7), cuda_init_error=801)
    out = tmp_path / "out"
    code, _, err = _run(
        infer_main, ["--build-engines-if-needed", "--bundle", str(bundle), "--out", str(out), str(film)]
    )
    assert code == 0, err
    first = err.splitlines()[0]
    gid = nvmap.stat().st_gid
    assert first.startswith(
        "olvf-infer: no TensorRT engines (no usable CUDA GPU here (CUDA says cudaErrorNotSupported): "
    )
    assert f"cannot open {nvmap}" in first and f"--group-add {gid}" in first and "video and render" in first
    why = json.loads((out / "study" / "report.json").read_text())["backend"]["why"]
    assert f"--group-add {gid}" in why
    nvmap.unlink()  # the container started without --runtime nvidia
    code, _, err = _run(infer_main, ["--build-engines-if-needed", "--bundle", str(bundle)])
    assert code == BackendError.exit_code and f"{nvmap} is not in this container: start it with --runtime nvidia" in err


def test_cuda_python_12_6_runs_the_engines_too(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """JetPack 6's cuda-python: values returned even on errors, no cuda.bindings.utils for the stream handle."""
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch, cuda_python="12.6.2")
    build_bundle_engines(bundle)
    crops = np.random.default_rng(5).standard_normal((3, 3, 64, 64)).astype(np.float32)
    with olvf.load(bundle, backend="tensorrt") as rt, olvf.load(bundle) as reference:
        np.testing.assert_allclose(rt.classify(crops).probabilities, reference.classify(crops).probabilities, atol=1e-2)


def test_an_engine_that_cannot_get_memory_frees_what_it_took(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle)
    use_fake_gpu(monkeypatch, memory=4096)  # TensorRT returns no execution context: too little GPU memory
    from cuda.bindings import runtime as cudart

    with pytest.raises(BackendError, match="not enough GPU memory.*--engine-max-batch 8"):
        olvf.load(bundle, backend="tensorrt")
    assert cudart._live_allocations() == 0


def test_a_batch_outside_the_profile_is_named(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    from olvf.errors import InputError

    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle, max_batch=2)
    with olvf.load(bundle, backend="tensorrt") as rt:
        too_many = np.zeros((3, 3, 64, 64), np.float32)
        with pytest.raises(InputError, match=r"outside the engine's profile \(1, 3, 64, 64\)..\(2, 3, 64, 64\)"):
            rt.runner.run({"crops": too_many})  # the Runtime splits; a direct caller is told


def test_build_engines_if_needed_is_best_effort_when_there_are_studies_to_read(
    cascade_bundle: Path, tmp_path: Path, film: Path, monkeypatch
) -> None:
    """A container started without --runtime nvidia (no GPU) must still read its studies, on ONNX Runtime."""
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch, count=0)
    out = tmp_path / "out"
    code, stdout, err = _run(
        infer_main, ["--build-engines-if-needed", "--bundle", str(bundle), "--out", str(out), str(film)]
    )
    assert code == 0, err
    assert (
        err.startswith("olvf-infer: no TensorRT engines (no usable CUDA GPU here (CUDA says cudaErrorNoDevice)")
        and "continuing with --backend auto" in err
    )
    assert json.loads((out / "study" / "report.json").read_text())["backend"]["name"] == "onnxruntime"
    # Without studies (a build-only start) or with an explicit --rebuild-engines it is an error.
    code, _, err = _run(infer_main, ["--build-engines-if-needed", "--bundle", str(bundle)])
    assert code == BackendError.exit_code and "no usable CUDA GPU here" in err
    code, _, err = _run(infer_main, ["--rebuild-engines", "--bundle", str(bundle), "--out", str(out), str(film)])
    assert code == BackendError.exit_code


def test_a_read_only_bundle_with_current_engines_is_fine(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == bundle else real_access(path, mode))
    assert build_bundle_engines(bundle, only_missing=True) is None
    with pytest.raises(BundleError, match="read-only"):
        build_bundle_engines(bundle)


def test_rebuilds_do_not_pile_up_figures(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    bundle = _copy(cascade_bundle, tmp_path)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle)
    manifest = build_bundle_engines(bundle)
    assert sorted(k for k in manifest.parity if k.startswith("tensorrt:")) == sorted(
        f"tensorrt:{e.file}" for e in manifest.engines
    )


def test_device_must_be_a_gpu_index_for_tensorrt(tiny_bundle: Path, monkeypatch) -> None:
    use_fake_gpu(monkeypatch)
    with pytest.raises(BackendError, match="takes a GPU index as device .* not 'cpu'"):
        olvf.load(tiny_bundle, backend="tensorrt", device="cpu")
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()) as err:
        infer_main(["--device", "gpu1", "x.dcm"])
    assert exit_info.value.code == 2 and "use cpu, cuda, tensorrt or a GPU index" in err.getvalue()


def test_export_with_precision_fp32_builds_no_engines_unasked(tmp_path: Path, monkeypatch) -> None:
    from detector_fixtures import legacy_yolov5_onnx

    rows = np.zeros((100, 6), np.float32)
    rows[0] = [160, 160, 32, 30, 0.9, 1.0]
    detector = legacy_yolov5_onnx(tmp_path / "det.onnx", rows)
    use_fake_gpu(monkeypatch)
    out = tmp_path / "bundle"
    args = ["--detector", str(detector), "--detector-imgsz", "320", "--out", str(out), "--precision", "fp32"]
    code, _, err = _run(export_main, args)
    assert code == 0, err
    assert read_manifest(out).engines == () and "engines will be built" not in err
