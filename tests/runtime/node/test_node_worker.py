"""The worker on its own (no bundle, no peers): one instance costs only itself, whatever it raises; a backend
failure is nobody's input's fault and stays waiting. A fake pipeline stands in for the cascade."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
from node_peers import IDENTITY_STRINGS, ROWS_FD, ROWS_US, phantom_template, write_studies

from olvf.errors import BackendError, InputError
from olvf.runtime.node.config import Destination, NodeConfig
from olvf.runtime.node.server import quiet_dicom_warnings
from olvf.runtime.node.spool import Spool, instance_key
from olvf.runtime.node.state import NodeState
from olvf.runtime.node.status import node_status, status_lines
from olvf.runtime.node.studylog import StudyLog
from olvf.runtime.node.worker import Worker
from olvf.runtime.study.results import InputFailure

SHA = "ef" * 32


class Surprise(Exception):
    """A type no triage names: what a library might raise on a header nobody foresaw."""


class FakePipeline:
    """Records what it is asked to screen; answers every input with an InputFailure naming the file, as the
    reader's errors do, or raises ``error`` for the whole batch."""

    batch = 4

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.seen: list[str] = []

    def run_batch(self, inputs, *, refusals=None):
        self.seen.extend(inputs)
        if self.error is not None:
            raise self.error
        return [InputFailure(path, InputError(f"{path}: the fake pipeline screens nothing")) for path in inputs]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def instances(tmp_path_factory) -> list[Path]:
    """Three phantom DX files, the first with Rows as FD (what an older node stored before refusing them)."""
    studies = write_studies(tmp_path_factory.mktemp("worker"), 3, phantom_template(size=(400, 300)), tag="worker")
    data = studies[0].path.read_bytes()
    studies[0].path.write_bytes(data.replace(ROWS_US, ROWS_FD))
    return [s.path for s in studies]


def make_worker(root: Path, pipeline: FakePipeline) -> tuple[Worker, Spool, NodeState, Lines]:
    quiet_dicom_warnings()
    spool = Spool(root)
    spool.create()
    config = NodeConfig(bundle=root, spool=root, destination=Destination.parse("PACS@127.0.0.1:104"))
    state = NodeState(root, {})
    lines = Lines()
    logger = logging.getLogger(f"olvf.node.test.worker.{id(lines)}")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    worker = Worker(config, spool, pipeline, None, StudyLog(logger), state, lambda: None)  # type: ignore[arg-type]
    return worker, spool, state, lines


def receive(spool: Spool, paths: list[Path]) -> list[str]:
    """Into the inbox in this order of arrival; returns their keys."""
    import pydicom

    keys = []
    for i, path in enumerate(paths):
        key = instance_key(str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID), SHA)
        spool.receive(key, path.read_bytes(), (i + 1) * 1_000_000_000)
        keys.append(key)
    return keys


def test_an_instance_that_raises_anything_is_set_aside_once_and_the_queue_moves_on(tmp_path, instances, monkeypatch):
    from olvf.runtime.writers import dicom_source

    pipeline = FakePipeline()
    worker, spool, state, lines = make_worker(tmp_path / "spool", pipeline)
    rows_fd, surprising, good = receive(spool, instances)
    real = dicom_source.read_dicom_source

    def read(path):
        if Path(path).stem == surprising:
            raise Surprise("Zephyrine^Quillbright")  # a message may quote a value: it must not be shown
        return real(path)

    monkeypatch.setattr(dicom_source, "read_dicom_source", read)
    assert worker.step() == 3  # no exception: the worker's loop never pauses for an input
    assert pipeline.seen == [str(spool.inbox / f"{good}.dcm")], "the good instance behind them was screened"
    assert list(spool.inbox.iterdir()) == [] and worker.step() == 0, "nothing left to retry"
    assert sorted(p.name for p in spool.failed.iterdir()) == sorted(
        f"{key}{ext}" for key in (rows_fd, surprising, good) for ext in (".dcm", ".json")
    )
    records = {r["key"]: r for r in spool.records()}
    assert {records[k]["state"] for k in (rows_fd, surprising, good)} == {"failed"}
    assert records[rows_fd]["reason"].startswith("the DICOM header's Rows cannot be decoded (BytesLengthException)")
    assert records[surprising]["reason"].startswith("unexpected Surprise at test_node_worker.py:")
    assert records[good]["reason"] == "the fake pipeline screens nothing"
    kept = json.loads((spool.failed / f"{surprising}.json").read_text())
    assert kept["reason"] == records[surprising]["reason"]
    failed_lines = [line for line in lines.lines if " failed: " in line]
    assert len(failed_lines) == 3 and all(line.endswith("; kept in failed/") for line in failed_lines)
    # F11: no reason, record, line or status names where the spool lives; none quotes a value.
    shown = "\n".join(
        [
            *failed_lines,
            *(json.dumps(r) for r in records.values()),
            *(p.read_text() for p in spool.failed.glob("*.json")),
            *status_lines(node_status(spool.root))[1:],  # the first line says which spool it is, as asked
        ]
    )
    assert str(tmp_path) not in shown
    assert not any(needle in shown for needle in IDENTITY_STRINGS)
    assert state._data["errors"] == [], "an input's failure is no error of the node"
    # olvf-serve status names each one: the file kept and its one-line reason.
    status = node_status(spool.root)
    assert {f["file"] for f in status["failed"]} == {f"failed/{k}.dcm" for k in (rows_fd, surprising, good)}
    text = "\n".join(status_lines(status))
    assert f"failed/{rows_fd}.dcm: the DICOM header's Rows cannot be decoded (BytesLengthException)" in text


def test_an_older_nodes_absolute_paths_are_shown_relative_to_the_spool(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.create()
    spool.record("k1", state="failed", reason=f"{spool.inbox}/k1.dcm: the pixel data cannot be read")
    spool.set_aside("k1", {"key": "k1", "reason": f"{spool.inbox}/k1.dcm: the pixel data cannot be read", "at": 1.0})
    status = node_status(spool.root)
    assert status["failed"][0]["reason"] == "inbox/k1.dcm: the pixel data cannot be read"
    assert status["last_studies"][0]["reason"] == "inbox/k1.dcm: the pixel data cannot be read"
    assert str(tmp_path) not in "\n".join(status_lines(status)).replace(f"spool {spool.root}:", "")


def test_a_backend_failure_keeps_the_instance_waiting_and_is_retried(tmp_path, instances):
    pipeline = FakePipeline(error=BackendError("the TensorRT engine failed (fake)"))
    worker, spool, state, _ = make_worker(tmp_path / "spool", pipeline)
    (good,) = receive(spool, instances[1:2])
    stop = threading.Event()
    loop = threading.Thread(target=worker.run, args=(stop,))
    loop.start()
    try:
        for _ in range(100):
            if state._data["errors"]:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        loop.join(10)
    assert not loop.is_alive()
    assert "BackendError: the TensorRT engine failed (fake); retrying in 5 s" in state._data["errors"][0]["error"]
    assert [p.stem for p in spool.inbox.iterdir()] == [good], "still waiting, to be tried again"
    assert spool.records() == [] and list(spool.failed.iterdir()) == []
