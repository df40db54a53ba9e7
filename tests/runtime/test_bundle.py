"""A bundle is its manifest plus files whose hashes match; anything else is refused clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import olvf
from olvf.errors import BundleError, OutputExistsError
from olvf.runtime.atomic import staged_directory, write_text_atomic
from olvf.runtime.bundle import open_bundle
from olvf.runtime.manifest import CLASS_NAMES, Manifest


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / "manifest.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))


def test_manifest_round_trips_and_describes_the_bundle(tiny_bundle: Path) -> None:
    bundle = open_bundle(tiny_bundle)
    manifest = bundle.manifest
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.classes == CLASS_NAMES
    assert manifest.ensemble.rule == "mean_probabilities"
    assert {g.precision for g in manifest.graphs} == {"fp32", "fp16"}
    assert set(manifest.files) == {g.file for g in manifest.graphs}
    for spec in manifest.models:
        assert spec.gradcam.layer and spec.gradcam.definition
        assert spec.preprocessing.input_size == (64, 64)
    assert all(name in manifest.producer for name in ("olvf", "torch", "onnx", "onnxruntime"))
    for graph in manifest.graphs:
        assert graph.file in manifest.parity and manifest.parity[graph.file]["top1_agreement"] == 1.0
    assert len(bundle.manifest_sha256) == 64


def test_runtime_preprocessing_comes_from_the_manifest(bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, lambda raw: [m["preprocessing"].update(mean=[0.1, 0.2, 0.3]) for m in raw["models"]])
    with olvf.load(bundle_copy) as rt:
        assert rt.preprocess.spec.mean == (0.1, 0.2, 0.3)
        assert rt.preprocess.input_shape == (3, 64, 64)


def test_tampered_graph_is_refused(bundle_copy: Path) -> None:
    graph = bundle_copy / "ensemble_fp32.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"ensemble_fp32\.onnx does not match the sha256.*re-export"):
        olvf.load(bundle_copy)


def test_missing_graph_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "ensemble_fp16.onnx").unlink()
    with pytest.raises(BundleError, match=r"ensemble_fp16\.onnx is missing"):
        open_bundle(bundle_copy)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda raw: raw.update(schema_version=99), "schema version 99"),
        (lambda raw: raw.pop("models"), "lacks models|incomplete"),
        (lambda raw: raw.update(kind="something"), "not an olvf bundle manifest"),
        (lambda raw: raw.update(classes=["a", "b", "c"]), "classes"),
        (lambda raw: raw["models"][0]["preprocessing"].update(interpolation="lanczos9"), "interpolation"),
        (lambda raw: raw["graphs"][0].update(precision="int3"), "precision"),
    ],
    ids=["schema", "missing-field", "kind", "classes", "interpolation", "precision"],
)
def test_bad_manifest_is_refused_with_a_reason(bundle_copy: Path, edit, message: str) -> None:
    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match=message):
        open_bundle(bundle_copy)


def test_not_json_manifest(bundle_copy: Path) -> None:
    (bundle_copy / "manifest.json").write_text('{"kind": "olvf-bundle", ')
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(bundle_copy)


def test_missing_bundle_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="olvf-export"):
        open_bundle(tmp_path / "nowhere")
    with pytest.raises(BundleError, match="no manifest.json"):
        open_bundle(tmp_path)


def test_asking_for_an_absent_precision(tiny_bundle: Path, bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, lambda raw: raw.update(graphs=[g for g in raw["graphs"] if g["precision"] == "fp32"]))
    with pytest.raises(BundleError, match="no ensemble/fp16 graph.*--precision fp16"):
        olvf.load(bundle_copy, precision="fp16", verify=False)


def test_atomic_writes_never_overwrite_silently(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_text_atomic(target, "first")
    with pytest.raises(OutputExistsError, match="--force"):
        write_text_atomic(target, "second")
    write_text_atomic(target, "second", force=True)
    assert target.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_staged_directory_leaves_target_untouched_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    with pytest.raises(OutputExistsError):
        with staged_directory(target):
            pass
    with pytest.raises(RuntimeError):
        with staged_directory(target, force=True) as staging:
            (staging / "half.onnx").write_text("half")
            raise RuntimeError("export failed")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"], "no staging folders left behind"
    with staged_directory(target, force=True) as staging:
        (staging / "new.onnx").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.onnx"]
