"""A bundle is trusted only as far as it can be checked: its manifest's integrity, its graphs' data, its signature.

The hostile test of main typed ``"demo": false`` or an operating point of 1.0
into manifest.json and olvf ran with it, the DEMO banner or every MRI
recommendation gone. Now any change olvf did not make is refused; a graph
may read external data only from files the manifest lists and hashes; and a
hospital can sign its bundle and have devices run nothing else, engines
built on the device included as recorded local additions.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from detector_fixtures import legacy_yolov5_onnx
from onnx import TensorProto, helper, numpy_helper

import olvf
from olvf.digest import sha256_file
from olvf.errors import BundleError
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.bundle.manifest import MANIFEST_NAME, EngineSpec, seal_manifest
from olvf.runtime.bundle.signing import SIGNATURE_NAME, TRUST_VARIABLE, write_signature
from olvf.runtime.bundle.updates import update_manifest
from tests_data import crop_paths


@pytest.fixture
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def _edit(folder: Path, edit, *, seal: bool) -> None:
    path = folder / MANIFEST_NAME
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(seal_manifest(raw) if seal else json.dumps(raw, indent=2))


def _keys(folder: Path, name: str) -> tuple[Ed25519PrivateKey, Path, Path]:
    key = Ed25519PrivateKey.generate()
    private = folder / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public = folder / f"{name}.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, private, public


# --- integrity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        lambda raw: raw.update(demo=False),
        lambda raw: raw.update(operating_points={"fresh": 1.0}),
        lambda raw: raw["crops"].update(margin=0.3),
    ],
    ids=["demo-false", "operating-point", "a-valid-setting"],
)
def test_a_manifest_changed_by_hand_is_refused(bundle: Path, edit) -> None:
    _edit(bundle, edit, seal=False)
    with pytest.raises(BundleError, match="was changed after olvf wrote it.*a hand edit"):
        open_bundle(bundle)


def test_a_manifest_without_integrity_record_is_refused(bundle: Path) -> None:
    _edit(bundle, lambda raw: raw.pop("integrity"), seal=False)
    with pytest.raises(BundleError, match="has no integrity record.*re-export"):
        open_bundle(bundle)


def test_demo_weights_cannot_be_declared_real_even_with_a_recomputed_hash(bundle: Path) -> None:
    _edit(bundle, lambda raw: raw.update(demo=False), seal=True)
    with pytest.raises(BundleError, match="demo is false but .* come from demo seeds"):
        open_bundle(bundle)


def test_olvfs_own_changes_keep_the_manifest_valid(bundle: Path) -> None:
    update_manifest(bundle, lambda m: dataclasses.replace(m, operating_points={"fresh": 0.4}), "the operating point")
    assert open_bundle(bundle).manifest.fresh_operating_point == 0.4


# --- external data -------------------------------------------------------------------------------


def _graph_with_external_data(path: Path, location: str) -> Path:
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    for key, value in (("offset", "0"), ("length", "64")):
        extra = weight.external_data.add()
        extra.key, extra.value = key, value
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y], [weight])), path)
    return path


def _list(folder: Path, *names: str) -> None:
    _edit(folder, lambda raw: raw["files"].update({n: sha256_file(folder / n) for n in names}), seal=True)


def test_a_graph_reading_data_from_outside_the_bundle_is_refused(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(bytes(64))
    _graph_with_external_data(bundle / "extra.onnx", "../secret.bin")
    _list(bundle, "extra.onnx")
    with pytest.raises(BundleError, match=r"extra.onnx reads external data from '../secret.bin'"):
        open_bundle(bundle).file("extra.onnx")


def test_external_data_the_manifest_lists_is_hash_checked_with_its_graph(bundle: Path) -> None:
    (bundle / "extra.bin").write_bytes(np.ones((4, 4), np.float32).tobytes())
    _graph_with_external_data(bundle / "extra.onnx", "extra.bin")
    _list(bundle, "extra.onnx", "extra.bin")
    assert open_bundle(bundle).file("extra.onnx") == bundle / "extra.onnx"
    (bundle / "extra.bin").write_bytes(bytes(64))
    with pytest.raises(BundleError, match=r"extra.bin does not match the sha256"):
        open_bundle(bundle).file("extra.onnx")


# --- signatures ----------------------------------------------------------------------------------


def test_a_signed_bundle_runs_where_its_key_is_trusted_and_nowhere_else(bundle: Path, tmp_path: Path) -> None:
    key, _, public = _keys(tmp_path, "hospital")
    _, _, stranger = _keys(tmp_path, "stranger")
    with pytest.raises(BundleError, match="is not signed.*--resign"):
        open_bundle(bundle, trusted=[public])
    identity = write_signature(bundle, key)
    status = open_bundle(bundle, trusted=[public]).signature
    assert (status.status, status.key_id, status.trusted) == ("verified", identity, True)
    with pytest.raises(BundleError, match=f"signed by key {identity}, which is not among the trusted keys"):
        open_bundle(bundle, trusted=[stranger])
    assert open_bundle(bundle).signature.trusted is None  # no keys configured: checked, not required


def test_trusted_keys_come_from_the_environment(bundle: Path, tmp_path: Path, monkeypatch) -> None:
    key, _, public = _keys(tmp_path, "hospital")
    (tmp_path / "keys").mkdir()
    public.rename(tmp_path / "keys" / public.name)  # a folder of public keys, as a device holds them
    monkeypatch.setenv(TRUST_VARIABLE, str(tmp_path / "keys"))
    with pytest.raises(BundleError, match="is not signed"):
        olvf.load(bundle)
    write_signature(bundle, key)
    with olvf.load(bundle) as rt:
        assert rt.bundle.signature.status == "verified" and rt.bundle.signature.trusted is True


def test_an_altered_signature_is_refused_even_where_none_is_required(bundle: Path, tmp_path: Path) -> None:
    key, _, _ = _keys(tmp_path, "hospital")
    write_signature(bundle, key)
    record = json.loads((bundle / SIGNATURE_NAME).read_text())
    record["manifest"]["operating_points"]["fresh"] = 0.99  # the signed base, edited to match an edit
    (bundle / SIGNATURE_NAME).write_text(json.dumps(record))
    with pytest.raises(BundleError, match="its signature does not verify"):
        open_bundle(bundle)


def test_a_new_operating_point_needs_a_new_signature(bundle: Path, tmp_path: Path) -> None:
    key, _, public = _keys(tmp_path, "hospital")
    write_signature(bundle, key)
    update_manifest(bundle, lambda m: dataclasses.replace(m, operating_points={"fresh": 0.4}), "the operating point")
    with pytest.raises(BundleError, match=r"changed since key \w+ signed it \(operating_points\).*--resign"):
        open_bundle(bundle, trusted=[public])
    assert open_bundle(bundle).signature.status == "changed since signing"  # reported where trust is not required
    write_signature(bundle, key)
    assert open_bundle(bundle, trusted=[public]).signature.status == "verified"


def _add_engine(folder: Path, source_sha: str | None = None) -> None:
    manifest = open_bundle(folder, verify=False).manifest
    (folder / "ensemble.fake-sm87.0001.engine").write_bytes(b"an engine built on this device")
    engine = EngineSpec(
        role="ensemble",
        file="ensemble.fake-sm87.0001.engine",
        source_graph="ensemble_fp16.onnx",
        source_sha256=source_sha or manifest.files["ensemble_fp16.onnx"],
        precision="fp16",
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability="8.7",
        built="2026-01-01T00:00:00+00:00",
    )
    files = {**manifest.files, engine.file: sha256_file(folder / engine.file)}
    parity = {**manifest.parity, f"tensorrt:{engine.file}": {"max_abs": 0.001}}
    new = dataclasses.replace(manifest, engines=(engine,), files=files, parity=parity)
    (folder / MANIFEST_NAME).write_text(new.to_json())


def test_engines_built_on_the_device_are_recorded_local_additions(bundle: Path, tmp_path: Path) -> None:
    key, _, public = _keys(tmp_path, "hospital")
    write_signature(bundle, key)
    _add_engine(bundle)
    status = open_bundle(bundle, trusted=[public]).signature
    assert status.status == "verified" and status.local_additions == (
        "engine ensemble.fake-sm87.0001.engine (Orin, built 2026-01-01T00:00:00+00:00)",
    )


def test_an_engine_not_built_from_a_signed_graph_voids_the_signature(bundle: Path, tmp_path: Path) -> None:
    key, _, public = _keys(tmp_path, "hospital")
    write_signature(bundle, key)
    _add_engine(bundle, source_sha="0" * 64)
    with pytest.raises(BundleError, match="engine ensemble.fake-sm87.0001.engine was not built from a signed graph"):
        open_bundle(bundle, trusted=[public])


def test_an_engine_entry_cannot_cover_a_swapped_graph(bundle: Path, tmp_path: Path) -> None:
    """The review's attack: an 'engine' named like a signed graph, the graph swapped and its hash updated."""
    key, _, public = _keys(tmp_path, "hospital")
    write_signature(bundle, key)
    manifest = open_bundle(bundle, verify=False).manifest
    graph = bundle / "ensemble_fp32.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")  # stands for a swapped graph
    engine = EngineSpec(
        role="ensemble",
        file="ensemble_fp32.onnx",
        source_graph="ensemble_fp16.onnx",
        source_sha256=manifest.files["ensemble_fp16.onnx"],
        precision="fp16",
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability="8.7",
        built="2026-01-01T00:00:00+00:00",
    )
    files = {**manifest.files, "ensemble_fp32.onnx": sha256_file(graph)}
    (bundle / MANIFEST_NAME).write_text(dataclasses.replace(manifest, engines=(engine,), files=files).to_json())
    with pytest.raises(BundleError, match="engine ensemble_fp32.onnx takes the name of a signed file"):
        open_bundle(bundle, trusted=[public])


def test_a_signed_engine_swapped_on_the_device_voids_the_signature(bundle: Path, tmp_path: Path) -> None:
    key, _, public = _keys(tmp_path, "hospital")
    _add_engine(bundle)
    write_signature(bundle, key)  # the signer shipped this engine
    assert open_bundle(bundle, trusted=[public]).signature.status == "verified"
    manifest = open_bundle(bundle, verify=False).manifest
    engine = bundle / "ensemble.fake-sm87.0001.engine"
    engine.write_bytes(b"another engine")
    files = {**manifest.files, engine.name: sha256_file(engine)}
    (bundle / MANIFEST_NAME).write_text(dataclasses.replace(manifest, files=files).to_json())
    with pytest.raises(BundleError, match=r"changed since key \w+ signed it \(files\)"):
        open_bundle(bundle, trusted=[public])


def test_export_signs_and_resign_signs_again(tmp_path: Path) -> None:
    from olvf.export.cli import main as export_main

    _, private, public = _keys(tmp_path, "hospital")
    rows = np.zeros((100, 6), np.float32)
    rows[0] = [160, 100, 32, 30, 0.9, 1.0]
    detector = legacy_yolov5_onnx(tmp_path / "det.onnx", rows)
    out = tmp_path / "engines"
    assert export_main(["--detector", str(detector), "--out", str(out), "--sign", str(private)]) == 0
    assert open_bundle(out, trusted=[public]).signature.status == "verified"
    update_manifest(out, lambda m: dataclasses.replace(m, operating_points={"fresh": 0.4}), "the operating point")
    assert export_main(["--resign", str(out), "--sign", str(private)]) == 0
    assert open_bundle(out, trusted=[public]).manifest.fresh_operating_point == 0.4
    assert export_main(["--resign", str(out)]) == 2  # --resign needs --sign KEY


def test_infer_runs_only_what_its_trusted_keys_signed(bundle: Path, tmp_path: Path, capsys) -> None:
    from olvf.runtime.cli import main as infer_main

    key, _, public = _keys(tmp_path, "hospital")
    _, _, stranger = _keys(tmp_path, "stranger")
    write_signature(bundle, key)
    crop = str(crop_paths()[0])
    assert (
        infer_main(["--bundle", str(bundle), "--out", str(tmp_path / "o1"), "--trusted-keys", str(stranger), crop]) == 4
    )
    assert "not among the trusted keys" in capsys.readouterr().err
    argv = ["--bundle", str(bundle), "--out", str(tmp_path / "o2"), "--json", "--trusted-keys", str(public), crop]
    assert infer_main(argv) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["report"]["bundle"]["signature"]["status"] == "verified"
    assert entry["report"]["bundle"]["signature"]["trusted"] is True


def test_an_unreadable_trusted_key_is_one_line(tmp_path: Path, monkeypatch) -> None:
    from olvf.runtime.bundle import signing

    _, _, public = _keys(tmp_path, "hospital")
    real = Path.read_bytes

    def refused(self: Path) -> bytes:
        if self == public:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refused)
    with pytest.raises(BundleError, match=r"trusted key .*hospital.pub.pem: cannot be read \(Permission denied\)"):
        signing.trusted_keys([public])
