"""OpenVINO on CPU: precision chosen on purpose and read back, BF16 refused where the CPU lacks it, INT8 graphs
made by the exporter and recorded in the manifest, nothing written to the home folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import import_openvino_or_skip
from fake_cpu import bf16_kinds, use_cpu_kind

import olvf
from olvf.errors import BackendError, BundleError, InputError, OlvfError
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.bundle.manifest import seal_manifest

openvino = import_openvino_or_skip()

from olvf.runtime.runners.openvino import bf16_unavailable, import_openvino  # noqa: E402

NO_BF16 = bf16_unavailable(import_openvino().Core())


def test_fp32_is_fp32_even_where_openvino_would_pick_bf16(tiny_bundle: Path) -> None:
    with olvf.load(tiny_bundle, backend="openvino", precision="fp32") as rt:
        compiled = rt.runner._compiled
        assert compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32
        assert rt.precision == "fp32" and rt.runner.label == "openvino (ensemble_fp32.onnx on cpu, fp32)"


def test_default_precision_is_fp32(tiny_bundle: Path) -> None:
    with olvf.load(tiny_bundle, backend="openvino") as rt:
        assert rt.precision == "fp32"


def test_bf16_is_refused_with_the_reason_where_the_cpu_lacks_it(tiny_bundle: Path, monkeypatch) -> None:
    use_cpu_kind(monkeypatch, "intel-no-bf16")
    with pytest.raises(BackendError, match=r"openvino bf16: this CPU, Intel Xeon \(no BF16\) .* has no native BF16"):
        olvf.load(tiny_bundle, backend="openvino", precision="bf16")


@pytest.mark.parametrize("kind", bf16_kinds())
def test_bf16_runs_as_bf16_or_not_at_all(tiny_bundle: Path, monkeypatch, kind: str) -> None:
    """Where OpenVINO offers BF16 the runner asks for it and reads it back. On a CPU that only claims it (a fake
    kind here, a hypervisor that misreports elsewhere) OpenVINO compiles FP32: a route labelled bf16 that ran
    FP32 would be verified on the wrong arithmetic, so the runner refuses it."""
    native = NO_BF16 is None
    use_cpu_kind(monkeypatch, kind)
    if not native:
        with pytest.raises(BackendError, match=r"compiled ensemble_fp32.onnx for .* not the bf16 asked"):
            olvf.load(tiny_bundle, backend="openvino", precision="bf16")
        return
    with olvf.load(tiny_bundle, backend="openvino", precision="bf16") as rt:
        assert rt.runner._compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.bf16
        assert rt.precision == "bf16" and rt.runner.model_path.name == "ensemble_fp32.onnx"


@pytest.mark.parametrize("precision", ["fp16", "int4"])
def test_other_precisions_are_refused(tiny_bundle: Path, precision: str) -> None:
    with pytest.raises(BackendError, match="choose fp32, bf16 or int8"):
        olvf.load(tiny_bundle, backend="openvino", precision=precision)


def test_int8_without_an_int8_graph_says_how_to_make_one(tiny_bundle: Path) -> None:
    with pytest.raises(BundleError, match="no ensemble/int8 graph.*olvf-export --quantize"):
        olvf.load(tiny_bundle, backend="openvino", precision="int8")


def test_onnx_runtime_refuses_the_openvino_graph(tiny_int8_bundle: Path) -> None:
    with pytest.raises(BackendError, match="OpenVINO graph.*backend openvino"):
        olvf.load(tiny_int8_bundle, backend="onnxruntime", precision="int8")


def test_int8_graph_is_recorded_with_its_calibration(tiny_int8_bundle: Path) -> None:
    manifest = open_bundle(tiny_int8_bundle).manifest
    graph = manifest.graph("ensemble", "int8")
    assert graph.format == "openvino-ir" and graph.file.endswith(".xml") and graph.weights.endswith(".bin")
    assert set(graph.members) <= set(manifest.files)
    calibration = graph.quantization["calibration"]
    assert calibration["source"] == "radiograph folder" and calibration["images"] == 16 and calibration["crops"] == 16
    assert len(calibration["crops_sha256"]) == 64 and len(calibration["images_sha256"]) == 64
    assert "film_" not in json.dumps(graph.quantization), "file names can identify patients"
    assert graph.quantization["kept_fp32_operations"] >= 3 * 5  # per model: head, pool, softmax, unsqueeze, maps
    with olvf.load(tiny_int8_bundle, backend="openvino", precision="int8") as rt:
        assert rt.precision == "int8" and rt.runner.weights_path.name == graph.weights
        # What is not quantised (heads, softmax, class maps) runs in FP32, not OpenVINO's BF16 default.
        assert rt.runner._compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32


def test_int8_stays_close_to_fp32_and_keeps_the_heads_exact(tiny_int8_bundle: Path) -> None:
    from olvf.export.parity import parity_crops

    batch = parity_crops((64, 64), count=6, seed=5)
    with (
        olvf.load(tiny_int8_bundle, backend="openvino", precision="int8") as int8,
        olvf.load(tiny_int8_bundle, backend="onnxruntime", precision="fp32") as fp32,
    ):
        got, want = int8.run_ensemble(batch), fp32.run_ensemble(batch)
    assert np.abs(got["probabilities"] - want["probabilities"]).max() < 0.1
    # Softmax and the ensemble mean stay FP32: rows sum to 1 and the ensemble is the models' mean exactly.
    np.testing.assert_allclose(got["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    models = [k for k in got if k.endswith("_probabilities")]
    np.testing.assert_allclose(got["probabilities"], np.mean([got[k] for k in models], axis=0), atol=1e-6)
    # A quantised graph that silently ran in FP32 would be identical.
    assert not np.allclose(got["probabilities"], want["probabilities"], atol=1e-6)


def test_no_8_bit_value_reaches_a_head_a_pool_or_a_class_map(tiny_int8_bundle: Path) -> None:
    manifest = open_bundle(tiny_int8_bundle).manifest
    graph = manifest.graph("ensemble", "int8")
    model = import_openvino().Core().read_model(str(tiny_int8_bundle / graph.file))
    maps = {m.class_maps_output for m in manifest.models}
    quantized_inputs = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        quantized_inputs += [t.get_node() for t in op.output(0).get_target_inputs()]
    assert quantized_inputs, "the graph is quantised at all"
    for node in quantized_inputs:
        assert node.get_type_name() not in ("MatMul", "ReduceMean", "Softmax"), node.get_friendly_name()
        assert node.get_friendly_name() not in maps


def test_quantize_replaces_the_int8_graph_and_drops_routes_verified_on_it(tiny_int8_bundle: Path, tmp_path) -> None:
    import shutil

    from conftest import write_calibration_images

    from olvf.export.quantize import add_int8_graph
    from olvf.runtime.runners.verified_routes import record_verified_route

    bundle = Path(shutil.copytree(tiny_int8_bundle, tmp_path / "bundle"))
    old = open_bundle(bundle).manifest.graph("ensemble", "int8")
    record_verified_route(bundle, "openvino-int8", {"decision_agreement": 1.0}, evidence="test")
    new = add_int8_graph(bundle, write_calibration_images(tmp_path / "films", 20, (80, 80), seed=9), progress=print)
    graph = new.graph("ensemble", "int8")
    assert graph.file != old.file and [g.precision for g in new.graphs].count("int8") == 1
    assert not (bundle / old.file).exists() and not (bundle / old.weights).exists()
    assert new.verified_routes == (), "a route verified on the old INT8 graph says nothing about the new one"
    assert graph.quantization["calibration"]["crops"] == 20
    open_bundle(bundle).verify_all()


def test_too_few_calibration_crops_are_refused(tiny_bundle: Path, tmp_path) -> None:
    import shutil

    from conftest import write_calibration_images

    from olvf.export.quantize import add_int8_graph

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="calibration found 5 vertebra crops, at least 16"):
        add_int8_graph(bundle, write_calibration_images(tmp_path / "films", 5, (80, 80)), progress=print)
    assert (bundle / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in bundle.iterdir()) == sorted(p.name for p in Path(tiny_bundle).iterdir())


def test_real_bundles_need_calibration_radiographs(tiny_bundle: Path, tmp_path) -> None:
    import shutil

    from olvf.export.quantize import add_int8_graph

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    raw = json.loads((bundle / "manifest.json").read_text())
    for model in raw["models"]:  # as if exported from checkpoints: demo seeds cannot be declared real
        model["source"] = {"file": f"{model['name']}.pt"}
    (bundle / "manifest.json").write_text(seal_manifest({**raw, "demo": False}))
    with pytest.raises(OlvfError, match="INT8 needs calibration radiographs.*--calibration FOLDER"):
        add_int8_graph(bundle, None, progress=print)


def test_calibration_from_a_labelled_set_csv(tmp_path) -> None:
    from conftest import write_calibration_images

    from olvf.export.quantize import radiograph_paths

    write_calibration_images(tmp_path / "films", 3, (80, 80))
    rows = "films/film_00.png,L1,fresh\nfilms/film_02.png,L1,normal\nfilms/film_00.png,L2,normal\n,,\n"
    (tmp_path / "set.csv").write_text("Path,level,label\n" + rows)  # a row per vertebra, as olvf-phantom --set writes
    assert radiograph_paths(tmp_path / "set.csv") == [tmp_path / "films/film_00.png", tmp_path / "films/film_02.png"]
    (tmp_path / "bad.csv").write_text("name,label\na.png,fresh\n")
    with pytest.raises(InputError, match="needs a column named path, file, image"):
        radiograph_paths(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="give a folder of radiographs or a labelled set's .csv"):
        radiograph_paths(tmp_path / "films" / "film_00.png")


def test_openvino_writes_nothing_into_the_home_folder(tiny_int8_bundle: Path, tmp_path) -> None:
    """openvino_telemetry (pulled in by openvino and NNCF) would write ~/intel and send usage data."""
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import olvf, numpy as np\n"
        f"rt = olvf.load({str(tiny_int8_bundle)!r}, backend='openvino', precision='int8')\n"
        "rt.classify(np.zeros((1, 3, 64, 64), np.float32))\n"
        "import nncf\n"
    )
    env = {**os.environ, "HOME": str(home)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    assert list(home.iterdir()) == []


@pytest.fixture
def quantized_copy(tiny_bundle: Path, tmp_path) -> Path:
    import shutil

    from conftest import write_calibration_images

    from olvf.export.cli import main

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    films = write_calibration_images(tmp_path / "films", 16, (96, 96))
    assert main(["--quantize", str(bundle), "--calibration", str(films)]) == 0
    assert main(["--calibration", str(films), "--out", str(tmp_path / "x")]) == 2  # calibrates nothing
    return bundle


def test_check_routes_refuses_a_set_too_small_before_any_study_runs(quantized_copy: Path, capsys) -> None:
    """Two studies hold no old vertebra and two fresh ones: any figure of them is no evidence (it was NaN, and a
    NaN passed the gate, then crashed the manifest write)."""
    from olvf.export.cli import main

    capsys.readouterr()
    before = (quantized_copy / "manifest.json").read_bytes()
    code = main(["--check-routes", str(quantized_copy), "--studies", "2"])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in out + err and "checking openvino" not in err, "refused before any study"
    (line,) = err.strip().splitlines()
    assert "2 phantom studies hold" in line and "at least 20 of each class" in line
    assert "check with --studies" in line
    assert (quantized_copy / "manifest.json").read_bytes() == before, "no route recorded"


@pytest.mark.parametrize("kind", ["intel-no-bf16", *bf16_kinds()])
def test_olvf_export_check_routes_on_every_cpu_kind(quantized_copy: Path, capsys, monkeypatch, kind: str) -> None:
    from olvf.errors import ParityError
    from olvf.export.cli import main
    from olvf.runtime.bundle import tolerances
    from olvf.runtime.checks.routes import _studies_needed

    use_cpu_kind(monkeypatch, kind)
    # A small set that holds every class, so the whole path runs in seconds; the real minimum is tested above.
    monkeypatch.setattr(tolerances, "MIN_GATE_VERTEBRAE_PER_CLASS", 1)
    studies = _studies_needed(5000)
    capsys.readouterr()
    code = main(["--check-routes", str(quantized_copy), "--studies", str(studies)])
    out = capsys.readouterr().out
    assert code in (0, ParityError.exit_code)
    assert f"of {studies} studies, decisions agree" in out and "openvino-int8:" in out
    claims_bf16 = kind != "intel-no-bf16"
    if not claims_bf16:
        assert "openvino-bf16: skipped: openvino bf16: this CPU, Intel Xeon (no BF16)" in out
    elif NO_BF16 is not None:  # a kind that only claims BF16 here: OpenVINO compiled FP32, and olvf noticed
        assert "openvino-bf16: skipped: OpenVINO compiled" in out
    else:
        assert "openvino-bf16: skipped" not in out and "openvino-bf16: " in out
    recorded = open_bundle(quantized_copy).manifest.verified_routes
    assert bool(recorded) == ("recorded in" in out) and (code == 0 or not recorded)
    assert "nan" not in (quantized_copy / "manifest.json").read_text().lower()
    for record in recorded:
        assert record.cpu["model"] == use_cpu_kind(monkeypatch, kind)["model"]
