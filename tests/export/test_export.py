"""olvf-export: three checkpoints in, a bundle out whose graphs reproduce them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import olvf
from olvf.digest import sha256_file
from olvf.errors import ParityError
from olvf.export import architectures
from olvf.export.checkpoints import load_classifier
from olvf.export.cli import main
from olvf.export.demo import demo_model, load_demo_classifiers
from olvf.export.gradcam_reference import autograd_grad_cam
from olvf.export.pipeline import export_bundle
from olvf.export.synthetic import synthetic_crops
from olvf.runtime.checks.verify import Tolerances
from tests_data import crop_images

TOLERANCE = {"fp32": (1e-4, 1e-3), "fp16": (1e-2, 0.1)}


@pytest.fixture(scope="module")
def source_models(checkpoint_files):
    return {
        arch.name: load_classifier(checkpoint_files[arch.name], arch).module for arch in architectures.STUDY_ENSEMBLE
    }


@pytest.fixture(scope="module")
def fresh_crops(exported_bundle: Path) -> np.ndarray:
    """Inputs the parity gate never saw: the repository's synthetic crop images plus new smooth images."""
    with olvf.load(exported_bundle) as rt:
        real = rt.preprocess(crop_images())
    return np.concatenate([real, synthetic_crops(2, (224, 224), seed=999).numpy()]).astype(np.float32)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_bundle_reproduces_the_checkpoints(exported_bundle, source_models, fresh_crops, precision) -> None:
    prob_tol, cam_tol = TOLERANCE[precision]
    with olvf.load(exported_bundle, precision=precision) as rt:
        result = rt.classify(fresh_crops)
    x = torch.from_numpy(fresh_crops)
    with torch.no_grad():
        expected = {name: torch.softmax(model(x), dim=1).numpy() for name, model in source_models.items()}
    ensemble = np.mean(list(expected.values()), axis=0)
    np.testing.assert_allclose(result.probabilities, ensemble, atol=prob_tol)
    assert (result.predictions == ensemble.argmax(axis=1)).all()
    target = torch.from_numpy(result.target)
    for arch in architectures.STUDY_ENSEMBLE:
        np.testing.assert_allclose(result.model_probabilities[arch.name], expected[arch.name], atol=prob_tol)
        reference_cam = autograd_grad_cam(arch, source_models[arch.name], x, target).numpy()
        np.testing.assert_allclose(result.cams[arch.name], reference_cam, atol=cam_tol, err_msg=arch.name)


def test_manifest_records_sources_parity_and_graphs(exported_bundle, checkpoint_files) -> None:
    manifest = json.loads((exported_bundle / "manifest.json").read_text())
    assert manifest["demo"] is False and manifest["precision"] == "fp16"
    assert [m["name"] for m in manifest["models"]] == ["resnet50", "densenet161", "resnext50_32x4d"]
    for model in manifest["models"]:
        source = model["source"]
        path = checkpoint_files[model["name"]]
        assert source["file"] == path.name and source["sha256"] == sha256_file(path)
        assert model["gradcam"]["feature_shape"][1:] == [7, 7]
    forms = {m["name"]: m["source"]["form"] for m in manifest["models"]}
    assert "'module.' prefix" in forms["resnet50"] and "'model.' prefix" in forms["resnext50_32x4d"]
    assert manifest["models"][1]["gradcam"]["layer"] == "features.norm5 -> ReLU"
    assert {g["precision"]: g["max_batch"] for g in manifest["graphs"]} == {"fp32": 8, "fp16": 8}
    for graph in manifest["graphs"]:
        figures = manifest["parity"][graph["file"]]
        prob_tol, cam_tol = TOLERANCE[graph["precision"]]
        assert max(figures["probabilities_max_abs_diff"].values()) <= prob_tol
        assert max(figures["gradcam_max_abs_diff"].values()) <= cam_tol
        assert figures["top1_agreement"] == 1.0
        assert graph["opset"] >= 17
    assert manifest["operating_points"] == {"fresh": 0.5}


def test_fp16_graph_carries_its_precision_and_keeps_softmax_and_pooling_in_fp32(exported_bundle) -> None:
    fp16 = onnx.shape_inference.infer_shapes(onnx.load(str(exported_bundle / "ensemble_fp16.onnx")))
    types = {
        v.name: v.type.tensor_type.elem_type for v in [*fp16.graph.value_info, *fp16.graph.input, *fp16.graph.output]
    }
    types.update({i.name: i.data_type for i in fp16.graph.initializer})
    conv_weights = [n.input[1] for n in fp16.graph.node if n.op_type == "Conv"]
    half = sum(types.get(w) == onnx.TensorProto.FLOAT16 for w in conv_weights)
    # The Grad-CAM class maps are the only FP32 convolutions (one per model).
    assert half == len(conv_weights) - 3
    for node in fp16.graph.node:
        if node.op_type in ("Softmax", "ReduceMean", "Gemm"):
            assert types[node.input[0]] == onnx.TensorProto.FLOAT, node.op_type
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in fp16.graph.output)
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ratio = (exported_bundle / "ensemble_fp16.onnx").stat().st_size / (
        exported_bundle / "ensemble_fp32.onnx"
    ).stat().st_size
    assert 0.45 < ratio < 0.55


def test_parity_failure_writes_nothing(tmp_path, tiny_members, tiny_options) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("the user's previous bundle")
    strict = {"fp32": Tolerances(probabilities=0.0, cam=0.0), "fp16": Tolerances(0.0, 0.0)}
    options = type(tiny_options)(**{**vars(tiny_options), "tolerances": strict})
    with pytest.raises(ParityError, match="does not match PyTorch.*no bundle was written"):
        export_bundle(out, tiny_members, options, force=True)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_existing_bundle_is_not_replaced_without_force(exported_bundle, checkpoint_files, capsys) -> None:
    before = sha256_file(exported_bundle / "manifest.json")
    code = main(["--demo", "--out", str(exported_bundle)])
    assert code == 8
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("olvf-export: error:") and "--force" in err[-1]
    assert sha256_file(exported_bundle / "manifest.json") == before


def test_demo_export_is_labelled_and_reproducible(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["--demo", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    classifiers = load_demo_classifiers()
    assert manifest["demo"] is True
    assert [m["source"]["demo_seed"] for m in manifest["models"]] == [0, 1, 2]
    assert {m["source"]["sha256"] for m in manifest["models"]} == {classifiers.sha256}
    # The demo's operating point is the one chosen with its heads, not the generic 0.5.
    assert manifest["operating_points"] == {"fresh": classifiers.fresh_threshold} != {"fresh": 0.5}
    assert [(g["role"], g["precision"]) for g in manifest["graphs"]] == [("detector", "fp32"), ("ensemble", "fp32")]
    err = capsys.readouterr().err
    assert "not for diagnosis" in err and "pass" in err and f"bundle written to {out}" in err
    # The torch backend rebuilds the models from the manifest: the seeds and the committed heads.
    with olvf.load(out, backend="torch") as reference, olvf.load(out) as rt:
        crops = synthetic_crops(3, (224, 224), seed=3).numpy()
        np.testing.assert_allclose(rt.classify(crops).probabilities, reference.classify(crops).probabilities, atol=1e-4)


def test_demo_weights_depend_only_on_the_seed() -> None:
    arch = architectures.get("tiny_resnet")
    a, b, c = (demo_model(arch, s, (64, 64)).state_dict() for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


@pytest.mark.parametrize(
    "argv,code,message",
    [
        (["--resnet50", "R.pt"], 1, "missing --densenet161, --resnext50"),
        (["--demo", "--resnet50", "R.pt"], 1, "--demo builds its own weights"),
        # Out-of-range arguments are usage errors (2, as docs/reference/exit-codes.md says), not bundle problems (4).
        (["--demo", "--max-batch", "0"], 2, "--max-batch must be at least 1"),
        (["--demo", "--fresh-threshold", "1.5"], 2, "--fresh-threshold"),
        (["--demo", "--std", "0,0,0"], 2, "std values must be positive"),
        (["--demo", "--input-size", "16"], 2, "each >= 32"),
        (["--demo", "--input-size", "192"], 2, "--demo: the demo heads were trained on 224x224 crops"),
    ],
    ids=["missing-checkpoints", "demo-and-checkpoints", "max-batch", "threshold", "std", "input-size", "demo-prep"],
)
def test_cli_usage_errors_are_one_line(argv, code, message, tmp_path, capsys) -> None:
    assert main([*argv, "--out", str(tmp_path / "b")]) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def test_cli_wrong_checkpoint_names_the_file_and_the_fix(checkpoint_files, tmp_path, capsys) -> None:
    argv = [
        "--resnet50",
        str(checkpoint_files["densenet161"]),
        "--densenet161",
        str(checkpoint_files["densenet161"]),
        "--resnext50",
        str(checkpoint_files["resnext50_32x4d"]),
        "--out",
        str(tmp_path / "b"),
    ]
    assert main(argv) == 5
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "densenet161_plain.pth is a densenet161 checkpoint, not resnet50; pass it as --densenet161" in err
    assert not (tmp_path / "b").exists()


def test_bundle_can_be_moved(exported_bundle, tmp_path) -> None:
    moved = Path(shutil.copytree(exported_bundle, tmp_path / "elsewhere"))
    with olvf.load(moved) as rt:
        assert rt.classify(np.zeros((1, 3, 224, 224), np.float32)).probabilities.shape == (1, 3)
