"""olvf-bench --quick runs every variant and writes a well-formed report (figures are not asserted: speed is the
benchmark's business, not the test suite's)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from olvf.bench.cli import main


def test_quick_benchmark_writes_a_complete_report(cascade_bundle: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    assert main(["--bundle", str(cascade_bundle), "--out", str(out), "--quick"]) == 0
    report = json.loads((out / "bench.json").read_text())
    assert report["quick"] is True
    expected = {"naive", "torch-batched", "olvf-onnxruntime-fp32", "olvf-onnxruntime-fp16"}
    assert expected <= set(report["variants"])
    for name in expected:
        figures = report["variants"][name]
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
        assert set(figures["stages"]) == {"read", "detect", "crops", "ensemble", "gradcam", "applicability", "write"}
        assert 0 <= figures["applicability_share"] < 1
        assert figures["ratio_to_floor"] > 0 and figures["speedup_vs_naive"] > 0
    assert report["variants"]["naive"]["speedup_vs_naive"] == 1.0
    # OpenVINO joins where installed, each variant against its own precision's ceiling, measured in the same run.
    if "olvf-openvino-fp32" in report["variants"] and "p50_ms" in report["variants"]["olvf-openvino-fp32"]:
        openvino = report["variants"]["olvf-openvino-fp32"]
        assert openvino["ratio_to_own_floor"] > 0 and openvino["speedup_vs_ort_fp32"] > 0
        assert report["ceiling"]["openvino_fp32_gemm_gops"] > 0 and report["ceiling"]["openvino_int8_gemm_gops"] > 0
        assert "--quantize" in report["variants"]["olvf-openvino-int8"]["skipped"]  # no INT8 graph in this bundle
        assert report["memory"]["olvf-openvino-fp32"]["peak_rss_mib"] > 0
        assert "| olvf-openvino-fp32 |" in (out / "bench.md").read_text()
    assert 0 < report["variants"]["olvf-onnxruntime-fp32"]["read_write_share"] < 1
    assert report["operations"]["crops"] == 5 and report["operations"]["study_gflop"] > 0
    assert report["ceiling"]["ort_fp32_gemm_gflops"] > 0 and report["floor_ms"] > 0
    assert report["cold_start"]["cold_start_ms"] > 0 and report["cold_start"]["torch_imported"] is False
    assert report["throughput"]["studies"] == 4
    assert set(report["ensemble_latency_ms_by_batch"]) == {"1", "4"}
    assert report["machine"]["bundle"]["manifest_sha256"]
    assert "| olvf-onnxruntime-fp32 |" in (out / "bench.md").read_text()
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["--bundle", str(cascade_bundle), "--out", str(out), "--quick"]) == 8, "no silent overwrite"


def test_engines_of_this_machine_join_the_benchmark(cascade_bundle: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """Wiring only, on the fake TensorRT (tests/fake_gpu): its timings mean nothing."""
    from fake_gpu_fixture import use_fake_gpu

    from olvf.runtime.checks.engines import build_bundle_engines

    bundle = tmp_path / "bundle"
    shutil.copytree(cascade_bundle, bundle)
    use_fake_gpu(monkeypatch)
    build_bundle_engines(bundle)
    out = tmp_path / "bench"
    assert main(["--bundle", str(bundle), "--out", str(out), "--quick", "--variant", "olvf-tensorrt-fp16"]) == 0
    figures = json.loads((out / "bench.json").read_text())["variants"]["olvf-tensorrt-fp16"]
    assert 0 < figures["p50_ms"] and set(figures["stages"]) == {
        "read",
        "detect",
        "crops",
        "ensemble",
        "gradcam",
        "applicability",
        "write",
    }
