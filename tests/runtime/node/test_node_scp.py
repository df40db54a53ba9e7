"""The node's SCP in this process (no bundle needed): durable before success, out of resources when the spool
cannot take an instance, duplicates acknowledged once, the allow-list. dcmtk's storescu is the sender."""

from __future__ import annotations

import errno
import logging
import subprocess
import time
from pathlib import Path

import pytest
from node_peers import (
    IDENTITY_STRINGS,
    MODALITY_AET,
    NODE_AET,
    phantom_template,
    send_raw,
    storescu,
    write_damaged,
    write_studies,
)
from peers import free_port, tool

from olvf.runtime.node import spool as spool_module
from olvf.runtime.node.config import Destination, NodeConfig, Peer
from olvf.runtime.node.scp import Receiver, build_ae
from olvf.runtime.node.server import quiet_dicom_warnings
from olvf.runtime.node.spool import Spool
from olvf.runtime.node.studylog import StudyLog

SHA = "ab" * 32


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    return write_studies(tmp_path_factory.mktemp("scp-studies"), 3, phantom_template(), tag="scp")


class Scp:
    def __init__(self, root: Path, allowed: tuple[Peer, ...] = (Peer(MODALITY_AET),)) -> None:
        tool("storescu")
        quiet_dicom_warnings()
        self.config = NodeConfig(
            bundle=root,
            spool=root,
            destination=Destination.parse("PACS@127.0.0.1:104"),
            ae_title=NODE_AET,
            port=free_port(),
            allowed=allowed,
        )
        self.spool = Spool(root)
        self.spool.create()
        self.errors: list[str] = []
        self.stored = 0
        self.handler = Lines()
        logger = logging.getLogger(f"olvf.node.test.{id(self)}")
        logger.addHandler(self.handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        receiver = Receiver(self.config, self.spool, SHA, StudyLog(logger), self._stored, self.errors.append)
        self.ae = build_ae(self.config)
        self.ae.start_server(("127.0.0.1", self.config.port), block=False, evt_handlers=receiver.handlers())

    def _stored(self) -> None:
        self.stored += 1

    def send(self, *files: Path, calling: str = MODALITY_AET) -> subprocess.CompletedProcess[str]:
        return storescu(self.config.port, list(files), calling=calling)

    def close(self) -> None:
        self.ae.shutdown()

    def leftovers(self) -> list[str]:
        """Anything half-written anywhere under the spool."""
        return [str(p) for p in self.spool.root.rglob("*") if p.name.endswith(".partial") or p.parent.name == "tmp"]


@pytest.fixture
def scp_factory():
    made: list[Scp] = []

    def make(root: Path, **kwargs) -> Scp:
        scp = Scp(root, **kwargs)
        made.append(scp)
        return scp

    yield make
    for scp in made:
        scp.close()


def test_an_instance_is_on_disk_before_success_and_a_copy_is_acknowledged_once(tmp_path, scp_factory, studies):
    scp = scp_factory(tmp_path / "spool")
    first = scp.send(studies[0].path, studies[0].path, studies[1].path)
    assert (
        first.stdout.count("Received Store Response (Success)")
        + first.stderr.count("Received Store Response (Success)")
        == 3
    )
    inbox = sorted(p.name for p in scp.spool.inbox.iterdir())
    assert len(inbox) == 2 and scp.stored == 2
    # Stored as received: the same bytes a reader gets from the modality's file, meta included.
    import pydicom

    kept = [pydicom.dcmread(p) for p in scp.spool.inbox.iterdir()]
    assert sorted(str(ds.SOPInstanceUID) for ds in kept) == sorted([studies[0].sop_uid, studies[1].sop_uid])
    assert any("duplicate" in line for line in scp.handler.lines)
    assert scp.leftovers() == []


def test_a_header_that_does_not_decode_is_refused_at_receipt_and_nothing_is_stored(tmp_path, scp_factory):
    """Rows as FD, Modality as VR XX: pydicom parses both lazily, so a check that only parses would answer
    success and leave the worker an instance it cannot read."""
    damaged = write_damaged(tmp_path / "damaged", phantom_template(size=(400, 300)))
    scp = scp_factory(tmp_path / "spool")
    started = time.monotonic()
    rows_fd = scp.send(damaged["rows_fd"])
    refused_in = time.monotonic() - started
    output = rows_fd.stdout + rows_fd.stderr
    assert "Received Store Response (Error: CannotUnderstand)" in output, output
    assert send_raw(scp.config.port, damaged["vr_xx"]) == 0xC210
    assert list(scp.spool.inbox.iterdir()) == [] and scp.leftovers() == [] and scp.stored == 0
    refusals = [line for line in scp.handler.lines if "refused" in line]
    assert len(refusals) == 2, scp.handler.lines
    assert "status 0xC210 cannot understand: the header does not decode at Rows (0028,0010) with VR FD" in refusals[0]
    assert "Modality (0008,0060) with VR XX (NotImplementedError)" in refusals[1]
    for record in scp.spool.records():
        assert record["state"] == "refused" and "does not decode" in record["reason"]
    for line in refusals:
        assert not any(needle in line for needle in IDENTITY_STRINGS), line
    # dcmtk reads a VR XX with a 4-byte length and sends the element with its dictionary VR: a sound header.
    healed = scp.send(damaged["vr_xx_dcmtk"])
    assert "Received Store Response (Success)" in healed.stdout + healed.stderr
    assert scp.stored == 1
    assert refused_in < 10, f"a refusal took {refused_in:.1f} s"


def test_a_calling_ae_title_from_another_host_is_rejected(tmp_path, scp_factory, studies):
    scp = scp_factory(tmp_path / "spool", allowed=(Peer(MODALITY_AET, "10.20.30.40"),))
    done = scp.send(studies[0].path)
    assert done.returncode != 0
    assert "Association Rejected" in done.stdout + done.stderr
    assert list(scp.spool.inbox.iterdir()) == []
    assert any("rejected: calling AE title not on the allow-list" in line for line in scp.handler.lines)


def test_a_write_that_fails_for_want_of_space_answers_out_of_resources(tmp_path, scp_factory, studies, monkeypatch):
    # Runs everywhere: the disk fills up at fsync time (delayed allocation), after the bytes were "written".
    real_fsync = spool_module.os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    scp = scp_factory(tmp_path / "spool")
    monkeypatch.setattr(spool_module.os, "fsync", full)
    done = scp.send(studies[0].path)
    monkeypatch.setattr(spool_module.os, "fsync", real_fsync)
    output = done.stdout + done.stderr
    assert "Received Store Response (Out of Resources)" in output or "OutOfResources" in output, output
    assert "Success" not in output
    assert list(scp.spool.inbox.iterdir()) == [] and scp.leftovers() == [] and scp.stored == 0
    assert any("out of resources" in error for error in scp.errors)


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 2 MiB tmpfs mounted for the test (needs root, as in CI); skipped with the reason where it cannot be."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'}); the ENOSPC test covers it")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_a_tiny_spool_filesystem_answers_out_of_resources_and_keeps_no_half_file(tiny_filesystem, scp_factory, studies):
    scp = scp_factory(tiny_filesystem / "spool")
    # 1.6 MB on a 2 MiB file system: the instance fits, room for its results (the space budget) does not.
    full = scp.send(studies[1].path)
    output = full.stdout + full.stderr
    assert "Out of Resources" in output or "OutOfResources" in output, output
    assert list(scp.spool.inbox.iterdir()) == []
    assert scp.leftovers() == []
    # An unwritable spool (the file system gone read-only) is out of resources too, never success.
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_filesystem)], check=True)
    readonly = scp.send(studies[2].path)
    output = readonly.stdout + readonly.stderr
    assert "Out of Resources" in output or "OutOfResources" in output, output
    assert list(scp.spool.inbox.iterdir()) == [] and scp.leftovers() == []
