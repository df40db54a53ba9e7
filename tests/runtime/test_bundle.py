"""A bundle is its manifest plus files whose hashes match; anything else is refused clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import olvf
from olvf.atomic import staged_directory, write_text_atomic
from olvf.errors import BundleError, OutputExistsError
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.bundle.manifest import CLASS_NAMES, Manifest, seal_manifest


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def _edit_manifest(bundle: Path, edit, *, seal: bool = True) -> None:
    """Change the manifest; ``seal``: as olvf would write it (integrity recomputed), else as a hand edit would."""
    path = bundle / "manifest.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(seal_manifest(raw) if seal else json.dumps(raw, indent=2))


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
        olvf.load(bundle_copy, backend="onnxruntime", precision="fp16")
    with pytest.raises(BundleError, match=r"ensemble_fp16\.onnx is missing"):
        open_bundle(bundle_copy).verify_all()


def test_a_start_checks_the_files_it_loads_not_every_file(bundle_copy: Path) -> None:
    """Other machines' engines and graphs this route never loads are not hashed at every start."""
    graph = bundle_copy / "ensemble_fp16.onnx"
    graph.write_bytes(graph.read_bytes()[:-10])
    with olvf.load(bundle_copy, backend="onnxruntime", device="cpu") as rt:
        assert rt.precision == "fp32"
    with pytest.raises(BundleError, match=r"ensemble_fp16\.onnx does not match the sha256"):
        olvf.load(bundle_copy, backend="onnxruntime", precision="fp16")
    with pytest.raises(BundleError, match=r"ensemble_fp16\.onnx does not match the sha256"):
        open_bundle(bundle_copy).verify_all()


def test_manifest_is_read_once_and_identified_by_the_bytes_read(bundle_copy: Path, monkeypatch) -> None:
    import hashlib

    from olvf.runtime.bundle import manifest as manifest_module

    reads: list[Path] = []
    original = manifest_module.read_manifest_bytes

    def counting(folder: Path) -> bytes:
        reads.append(folder)
        return original(folder)

    monkeypatch.setattr("olvf.runtime.bundle.files.read_manifest_bytes", counting)
    bundle = open_bundle(bundle_copy)
    assert len(reads) == 1
    assert bundle.manifest_sha256 == hashlib.sha256((bundle_copy / "manifest.json").read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda raw: raw.update(schema_version=99), "schema version 99"),
        (lambda raw: raw.pop("models"), "lacks models|incomplete"),
        (lambda raw: raw.update(kind="something"), "not an olvf bundle manifest"),
        (lambda raw: raw.update(classes=["a", "b", "c"]), "classes"),
        (lambda raw: raw["models"][0]["preprocessing"].update(interpolation="lanczos9"), "interpolation"),
        (lambda raw: raw["graphs"][0].update(precision="int3"), "precision"),
        (lambda raw: raw["graphs"][0].update(file="../../elsewhere/det.onnx"), "outside the bundle"),
        (lambda raw: raw["crops"].update(margin=-0.9), "margin"),
        (lambda raw: raw["models"][0]["preprocessing"].update(std=[0, 0, 0]), "std"),
        (lambda raw: raw.update(operating_points={"fresh": 1.0}), "operating point"),
        (lambda raw: raw["graphs"][0].update(max_batch="32"), "max_batch"),
        (lambda raw: raw["display"].update(invert_monochrome1="false"), "display: invert_monochrome1"),
    ],
    ids=[
        "schema",
        "missing-field",
        "kind",
        "classes",
        "interpolation",
        "precision",
        "path-escape",
        "margin",
        "std",
        "operating-point",
        "string-number",
        "display",
    ],
)
def test_bad_manifest_is_refused_with_a_reason(bundle_copy: Path, edit, message: str) -> None:
    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match=message):
        open_bundle(bundle_copy)


def test_schema_1_bundles_still_load(bundle_copy: Path) -> None:
    """Bundles exported before the study pipeline: crops on a 0..255 scale, detector without min_size."""

    def to_schema_1(raw: dict) -> None:
        raw["schema_version"] = 1
        for model in raw["models"]:
            model["preprocessing"]["value_max"] = 255.0

    _edit_manifest(bundle_copy, to_schema_1)
    with olvf.load(bundle_copy, backend="onnxruntime") as rt:
        assert rt.manifest.schema_version == 2
        assert json.loads(rt.manifest.to_json())["schema_version"] == 2
        assert "value_max" not in json.loads(rt.manifest.to_json())["models"][0]["preprocessing"]
    _edit_manifest(bundle_copy, lambda raw: [m["preprocessing"].update(value_max=1.0) for m in raw["models"]])
    with pytest.raises(BundleError, match="0..1.0"):
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
