"""olvf-infer and olvf-bench from the command line: results for people and scripts, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from olvf.bench.cli import main as bench_main
from olvf.runtime.cli import main as infer_main
from tests_data import crop_paths


def test_prints_a_table_and_flags_the_demo(tiny_bundle: Path, capsys) -> None:
    assert infer_main(["--bundle", str(tiny_bundle), *map(str, crop_paths())]) == 0
    out = capsys.readouterr().out
    assert out.startswith("DEMO bundle: random weights, not for diagnosis")
    for path in crop_paths():
        assert path.name in out
    assert "backend onnxruntime on cpu (fp32)" in out


def test_json_for_scripts(tiny_bundle: Path, capsys) -> None:
    assert infer_main(["--bundle", str(tiny_bundle), "--json", "--precision", "fp16", str(crop_paths()[0])]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["demo"] is True and report["backend"]["precision"] == "fp16"
    (row,) = report["crops"]
    assert row["prediction"] in ("normal", "old", "fresh")
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert set(row["models"]) == {"tiny_resnet", "tiny_densenet", "tiny_resnext"}
    assert all(0 <= v < 64 for v in row["gradcam_peak_yx"])


@pytest.mark.parametrize(
    "make_args,code,message",
    [
        (
            lambda b, t: ["--bundle", str(t / "missing"), str(crop_paths()[0])],
            4,
            "does not exist; create it with olvf-export",
        ),
        (lambda b, t: ["--bundle", str(b), str(t / "nope.png")], 3, "nope.png: no such file"),
        (lambda b, t: ["--bundle", str(b), str(Path(__file__))], 3, "not an image"),
        (
            lambda b, t: ["--bundle", str(b), "--backend", "tensorrtt", str(crop_paths()[0])],
            7,
            "unknown backend 'tensorrtt'",
        ),
    ],
    ids=["missing-bundle", "missing-image", "not-an-image", "unknown-backend"],
)
def test_errors_are_one_line_with_the_fix(tiny_bundle, tmp_path, capsys, make_args, code, message) -> None:
    assert infer_main(make_args(tiny_bundle, tmp_path)) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_tampered_bundle_exits_4(tiny_bundle: Path, tmp_path: Path, capsys) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    with open(bundle / "ensemble_fp32.onnx", "ab") as handle:
        handle.write(b"\0")
    assert infer_main(["--bundle", str(bundle), str(crop_paths()[0])]) == 4
    assert "does not match the sha256" in capsys.readouterr().err


def test_runtime_runs_without_torch(tiny_bundle: Path) -> None:
    """The lean runtime must work where torch, torchvision and ultralytics cannot even be imported."""
    script = f"""
import sys
for name in ("torch", "torchvision", "ultralytics", "tensorrt"):
    sys.modules[name] = None  # any import of these now raises ImportError
from olvf.runtime.cli import main
code = main(["--bundle", {str(tiny_bundle)!r}, "--json", {str(crop_paths()[0])!r}])
assert code == 0, code
assert not any(m.startswith("torch") for m in sys.modules if sys.modules[m] is not None)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["crops"][0]["prediction"] in ("normal", "old", "fresh")


def test_bench_reports_latency(tiny_bundle: Path, capsys) -> None:
    assert bench_main(["--bundle", str(tiny_bundle), "--runs", "3", "--warmup", "1"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["crops"] == 5 and figures["runs"] == 3
    assert 0 < figures["p50_ms"] <= figures["p95_ms"]
