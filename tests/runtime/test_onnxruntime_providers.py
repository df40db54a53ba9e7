"""ONNX Runtime's GPU routes as far as they can be checked without a GPU: options, caches, no silent CPU fallback."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
import pytest

import olvf
from olvf.errors import BackendError
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.runners.onnxruntime import ORT_TRT_CACHE, OnnxRuntimeRunner, provider_list


def test_tensorrt_provider_gets_fp16_caches_in_the_bundle_and_an_explicit_profile(tiny_bundle: Path) -> None:
    runner = OnnxRuntimeRunner.from_bundle(open_bundle(tiny_bundle), "ensemble", device="tensorrt", device_id=1)
    providers = provider_list(runner.requested_device, runner.device_id, runner.tensorrt)
    assert [name for name, _ in providers] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    trt = providers[0][1]
    cache = str(tiny_bundle / ORT_TRT_CACHE)
    assert trt["device_id"] == 1 and trt["trt_fp16_enable"] is True
    assert trt["trt_engine_cache_enable"] and trt["trt_engine_cache_path"] == cache
    assert trt["trt_timing_cache_enable"] and trt["trt_timing_cache_path"] == cache
    assert trt["trt_engine_cache_prefix"] == "ensemble_fp32"
    # Without these the provider rebuilds its engine whenever a batch size leaves the range it has seen.
    assert trt["trt_profile_min_shapes"] == "crops:1x3x64x64"
    assert trt["trt_profile_opt_shapes"] == "crops:4x3x64x64"
    assert trt["trt_profile_max_shapes"] == "crops:4x3x64x64"
    assert providers[1][1] == {"device_id": 1, "arena_extend_strategy": "kSameAsRequested"}


def test_cpu_asks_for_nothing_else() -> None:
    assert provider_list("cpu") == [("CPUExecutionProvider", {})]


def test_a_gpu_provider_that_cannot_start_is_an_error_not_a_silent_cpu_run(tiny_bundle: Path, monkeypatch) -> None:
    """onnxruntime-gpu without its CUDA libraries only warns and runs on CPU: olvf refuses that."""
    real_session = onnxruntime.InferenceSession
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(
        onnxruntime,
        "InferenceSession",
        lambda path, sess_options=None, providers=None: real_session(
            path, sess_options=sess_options, providers=["CPUExecutionProvider"]
        ),
    )
    with pytest.raises(BackendError, match="has CUDAExecutionProvider but it could not start here.*CUDA and cuDNN"):
        olvf.load(tiny_bundle, device="cuda")
    # auto passes it over with that reason and runs on CPU.
    with olvf.load(tiny_bundle, backend="auto") as rt:
        assert rt.runner.device == "cpu" and rt.precision == "fp32"
        reasons = dict(rt.selection.passed_over)
    assert "could not start here" in reasons["ONNX Runtime on the GPU"]
    assert rt.selection.chosen == "ONNX Runtime on CPU"


def test_auto_on_cpu_only_when_asked(tiny_bundle: Path) -> None:
    unverified = "none verified for this bundle (olvf-validate checks a route on a labelled set and records it)"
    with olvf.load(tiny_bundle, backend="auto", device="cpu") as rt:
        assert rt.selection.passed_over == (
            ("TensorRT", "--device cpu was asked"),
            ("ONNX Runtime on the GPU", "--device cpu was asked"),
            ("reduced precision on CPU", unverified),
        )
        assert rt.selection.chosen == "ONNX Runtime on CPU"
        assert rt.selection.brief.startswith(
            "auto: TensorRT: --device cpu was asked, ONNX Runtime on the GPU: --device cpu was asked"
        )


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(), reason="this onnxruntime has a CUDA provider"
)
def test_naming_a_provider_under_auto_chooses_onnxruntime(tiny_bundle: Path, tmp_path: Path, capsys) -> None:
    from olvf.runtime.cli import main

    # No CUDA provider here: asking for it by name fails in one line instead of quietly falling back.
    crop = Path(__file__).parents[1] / "data" / "crop_normal.png"
    code = main(["--bundle", str(tiny_bundle), "--device", "cuda", "--out", str(tmp_path), str(crop)])
    assert code == BackendError.exit_code and capsys.readouterr().err.startswith(
        "olvf-infer: error: onnxruntime has no CUDAExecutionProvider here"
    )
    assert main(["--bundle", str(tiny_bundle), "--device", "cpu", "--out", str(tmp_path), str(crop)]) == 0


def test_onnxruntime_on_a_gpu_runs_the_fp16_graph_unless_told(tiny_bundle: Path, monkeypatch) -> None:
    """A stand-in for onnxruntime-gpu: it runs on CPU but reports the CUDA provider, as a working one would."""
    real_session = onnxruntime.InferenceSession

    class Reporting:
        def __init__(self, path, sess_options=None, providers=None):
            self.inner = real_session(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(onnxruntime, "InferenceSession", Reporting)
    with olvf.load(tiny_bundle, device="cuda") as rt:
        assert (rt.precision, rt.runner.device) == ("fp16", "cuda:0")
        # olvf.load defaults to auto, as olvf-infer does; naming a provider is reported as what the user typed.
        assert rt.selection.requested == "auto" and rt.backend == "onnxruntime"
        assert rt.selection.why == "--device cuda: ONNX Runtime with its CUDA provider"
        assert "--backend onnxruntime" not in rt.selection.brief
    with olvf.load(tiny_bundle, device="cuda", precision="fp32") as rt:
        assert rt.precision == "fp32"
    with olvf.load(tiny_bundle, backend="auto") as rt:
        assert rt.selection.chosen == "ONNX Runtime on the GPU" and rt.precision == "fp16"
