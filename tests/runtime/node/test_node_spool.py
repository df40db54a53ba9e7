"""The spool on its own: durable writes leave nothing half-written, recovery after a crash, idempotent keys."""

from __future__ import annotations

import errno
import json

import pytest

from olvf.runtime.node import spool as spool_module
from olvf.runtime.node.spool import Spool, instance_key, uid_hash, write_durable
from olvf.runtime.node.status import node_status, status_lines

SHA = "cd" * 32


def test_keys_tell_instances_and_bundles_apart_and_reveal_no_uid():
    key = instance_key("1.2.3.4", SHA)
    assert key == instance_key("1.2.3.4\x00", SHA)  # DICOM pads UIDs with NUL
    assert key != instance_key("1.2.3.4", "ef" * 32) and key != instance_key("1.2.3.41", SHA)
    assert len(key) == 32 and "1.2.3.4" not in key and uid_hash("1.2.3.4") != key[:12]


def test_a_failed_durable_write_leaves_the_target_as_it_was(tmp_path, monkeypatch):
    target = tmp_path / "a.dcm"
    target.write_bytes(b"old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "fsync", full)
    with pytest.raises(OSError):
        write_durable(target, b"new" * 1000)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.dcm"]


def test_recovery_removes_partial_work_and_keeps_what_was_acknowledged(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.create()
    spool.receive("k1", b"one", 1_000_000_000)
    spool.receive("k2", b"two", 2_000_000_000)
    (spool.tmp / ".k3.dcm.abc.partial").write_bytes(b"half")  # a receive cut off by the crash: never acknowledged
    (spool.outbox / ".k9.xyz.partial").mkdir()  # results being staged
    # k2's results were written, then the crash came before its inbox entry went.
    spool.put_results("k2", {"sc.dcm": b"sc", "sr.dcm": b"sr"}, {"received_at": 2.0})
    spool.receive("k2", b"two", 2_000_000_000)
    found = spool.recover()
    assert found == {"partial": 2, "inbox": 1, "outbox": 1}
    assert [p.name for p in spool.inbox.iterdir()] == ["k1.dcm"]
    assert list(spool.tmp.iterdir()) == [] and [p.name for p in spool.outbox.iterdir()] == ["k2"]
    assert spool.holds("k1") == "waiting to be screened" and spool.holds("k2") == "results waiting to be sent"


def test_the_oldest_wait_first(tmp_path):
    spool = Spool(tmp_path)
    spool.create()
    for key, ns in (("b", 3), ("a", 2), ("c", 1)):
        spool.receive(key, b"x", ns * 1_000_000_000)
    assert [p.stem for p in spool.waiting(2)] == ["c", "a"]


def test_a_refused_instance_is_not_held_so_a_corrected_copy_is_taken(tmp_path):
    spool = Spool(tmp_path)
    spool.create()
    spool.record("k", state="refused", reason="cannot be decoded")
    assert spool.holds("k") is None
    spool.record("k", state="ignored", reason="modality CT is not screened")
    assert spool.holds("k") == "ignored"


def test_status_counts_the_queue_and_gives_time_to_result(tmp_path):
    spool = Spool(tmp_path)
    spool.create()
    for i, seconds in enumerate([1.0, 2.0, 3.0, 4.0]):
        spool.record(f"{i:032x}", state="sent", received_at=100.0 + i, screened_at=100.5 + i, time_to_result_s=seconds)
    spool.record("f" * 32, state="ignored", reason="modality CT is not screened", received_at=1.0)
    spool.receive("e" * 32, b"x", 5)
    spool.put_results("d" * 32, {"sc.dcm": b"s", "sr.dcm": b"r"}, {"received_at": 7.0})
    (spool.root / "node.json").write_text(json.dumps({"errors": [{"at": 9.0, "error": "sending: unreachable"}]}))
    status = node_status(tmp_path, last=3, running=False)
    assert status["queue"] == {"waiting_to_screen": 1, "waiting_to_send": 1, "dead_letter": 0, "failed": 0}
    assert status["states"] == {"sent": 4, "ignored": 1}
    assert status["time_to_result_s"] == {"studies": 4, "p50": 2.5, "p95": 3.85}
    assert [s["state"] for s in status["last_studies"]] == ["ignored", "sent", "sent"]
    text = "\n".join(status_lines(status))
    assert "1 waiting to screen, 1 waiting to send" in text and "p50 2.50 s, p95 3.85 s" in text
    assert "modality CT is not screened" in text and "sending: unreachable" in text


def test_one_node_per_spool(tmp_path):
    from olvf.runtime.node.config import Destination, NodeConfig
    from olvf.runtime.node.server import Node, spool_in_use
    from olvf.runtime.node.spool import SpoolError

    config = NodeConfig(bundle=tmp_path, spool=tmp_path, destination=Destination.parse("PACS@127.0.0.1:104"))
    Spool(tmp_path).create()
    first, second = Node(config), Node(config)
    assert not spool_in_use(tmp_path)
    first._lock()
    try:
        assert spool_in_use(tmp_path)
        with pytest.raises(SpoolError, match="in use by another olvf-serve"):
            second._lock()
    finally:
        first._unlock()
    assert not spool_in_use(tmp_path)
