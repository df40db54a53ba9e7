"""The bundle served by a real Triton Inference Server (PyTriton's tritonserver on loopback) and read back.

olvf-export --triton writes the model repository; its configs parse with
Triton's own model-config protobuf; the triton backend gives the same outputs
as ONNX Runtime locally, the same verdicts through olvf-infer, and refuses a
server that serves another bundle's graph. Tests that need the server skip
without PyTriton's environment (tests/triton/make_env.sh, which CI runs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from triton_peer import TritonServer

import olvf
from olvf.errors import BackendError, UsageError
from olvf.export.triton_repository import write_triton_repository
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.cli import main as infer_main
from olvf.runtime.runners import runner_class

pytest.importorskip("tritonclient.grpc", reason="the triton backend's tests need pip install 'olvf[triton]'")


def _config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def repository(cascade_bundle: Path, tmp_path_factory) -> Path:
    return write_triton_repository(cascade_bundle, tmp_path_factory.mktemp("triton") / "repo")


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory):
    server = TritonServer(repository, tmp_path_factory.mktemp("triton-server")).start()
    yield server
    server.stop()


def test_the_repository_configs_parse_with_tritons_own_protobuf_and_carry_the_bundle(
    repository: Path, cascade_bundle: Path
) -> None:
    bundle = open_bundle(cascade_bundle)
    for role in ("detector", "ensemble"):
        config = _config(repository / f"olvf_{role}" / "config.pbtxt")
        graph = bundle.manifest.graph(role, "fp32")
        assert config.name == f"olvf_{role}" and config.backend == "onnxruntime"
        assert config.max_batch_size == graph.max_batch
        assert [i.name for i in config.input] == [graph.input_name]
        assert [o.name for o in config.output] == list(graph.output_names)
        assert config.dynamic_batching.priority_levels == 2 and config.dynamic_batching.default_priority_level == 2
        assert all(b <= graph.max_batch for b in config.dynamic_batching.preferred_batch_size)
        parameters = {k: v.string_value for k, v in config.parameters.items()}
        assert parameters["olvf_graph_sha256"] == bundle.manifest.files[graph.file]
        assert parameters["olvf_manifest_sha256"] == bundle.manifest_sha256
        served = repository / f"olvf_{role}" / "1" / "model.onnx"
        assert served.read_bytes() == bundle.file(graph.file).read_bytes()
    assert json.loads((repository / "manifest.json").read_text()) == json.loads(
        (cascade_bundle / "manifest.json").read_text()
    )


def test_an_existing_repository_is_not_replaced_without_force(repository: Path, cascade_bundle: Path) -> None:
    from olvf.errors import OutputExistsError

    with pytest.raises(OutputExistsError, match="--force"):
        write_triton_repository(cascade_bundle, repository)


def test_the_triton_backend_needs_a_url(cascade_bundle: Path) -> None:
    with pytest.raises(UsageError, match="--triton-url HOST:PORT"):
        runner_class("triton").from_bundle(open_bundle(cascade_bundle), "ensemble")
    code = infer_main(["--bundle", str(cascade_bundle), "--triton-url", "127.0.0.1:1", "x.dcm"])
    assert code == 2  # --triton-url without --backend triton: a usage error


@pytest.mark.slow
def test_the_server_gives_what_onnx_runtime_gives_here(server: TritonServer, cascade_bundle: Path) -> None:
    bundle = open_bundle(cascade_bundle)
    rng = np.random.default_rng(0)
    for role, batch in (("ensemble", 3), ("detector", 2)):
        shape = [batch if d == "N" else int(d) for d in bundle.manifest.graph(role, "fp32").input_shape]
        feed = rng.random(shape, dtype=np.float32)
        name = bundle.manifest.graph(role, "fp32").input_name
        with (
            runner_class("onnxruntime").from_bundle(bundle, role, "fp32") as local,
            runner_class("triton").from_bundle(bundle, role, triton_url=server.url) as remote,
        ):
            here, there = local.run({name: feed}), remote.run({name: feed})
        assert set(here) == set(there)
        for output in here:
            tolerance = 1e-4 if "maps" in output else 1e-5
            np.testing.assert_allclose(there[output], here[output], atol=tolerance, rtol=0, err_msg=output)


@pytest.mark.slow
def test_a_study_through_triton_has_the_verdict_it_has_here(server: TritonServer, cascade_bundle: Path, tmp_path):
    from olvf.phantom import dicom_dataset, make_phantom

    film = tmp_path / "film.dcm"
    dicom_dataset(make_phantom(seed=3, fractures={"L2": "fresh"}, size=(1250, 1000))).save_as(
        film, enforce_file_format=True
    )
    reports = {}
    for backend, extra in (("onnxruntime", []), ("triton", ["--triton-url", server.url, "--triton-priority", "er"])):
        out = tmp_path / backend
        code = infer_main(["--bundle", str(cascade_bundle), "--backend", backend, *extra, "--out", str(out), str(film)])
        assert code in (0, 9)
        reports[backend] = json.loads((out / "film" / "report.json").read_text())
    local, remote = reports["onnxruntime"], reports["triton"]
    assert remote["backend"]["name"] == "triton" and remote["backend"]["device"] == f"triton://{server.url}"
    assert remote["mri_recommended"] == local["mri_recommended"] and remote["mri_levels"] == local["mri_levels"]
    assert [v["shown_as"] for v in remote["vertebrae"]] == [v["shown_as"] for v in local["vertebrae"]]
    for a, b in zip(remote["vertebrae"], local["vertebrae"]):
        assert a["box"] == b["box"]
        for k in a["probabilities"]:
            assert abs(a["probabilities"][k] - b["probabilities"][k]) <= 1e-5


@pytest.mark.slow
def test_a_server_serving_another_bundles_graph_is_refused_at_load(server: TritonServer, exported_bundle: Path) -> None:
    """The server serves the cascade bundle; a bundle of other weights must not get its verdicts from it."""
    with pytest.raises(BackendError, match=r"serves olvf_ensemble with graph \w{12}, not this bundle's \w{12}"):
        olvf.load(exported_bundle, "triton", triton_url=server.url)


@pytest.mark.slow
def test_a_server_gone_mid_run_is_one_line(repository: Path, cascade_bundle: Path, tmp_path) -> None:
    server = TritonServer(repository, tmp_path).start()
    bundle = open_bundle(cascade_bundle)
    runner = runner_class("triton").from_bundle(bundle, "ensemble", triton_url=server.url, triton_timeout_s=10).load()
    shape = [1 if d == "N" else int(d) for d in bundle.manifest.graph("ensemble", "fp32").input_shape]
    crops = np.zeros(shape, np.float32)
    runner.run({"crops": crops})
    server.stop()
    with pytest.raises(BackendError) as caught:
        runner.run({"crops": crops})
    message = str(caught.value)
    assert message.startswith(f"Triton server {server.url} (olvf_ensemble): ") and "\n" not in message
    runner.close()
