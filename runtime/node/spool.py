"""The node's spool: each received instance is on disk, durably, before the sender is told it arrived.

Every state of an instance is where its file is, so that a crash at any
moment leaves a state to resume from::

    tmp/                    instances being written (removed at start: never answered success)
    inbox/<key>.dcm         received and durable, waiting to be screened
    outbox/<key>/           results waiting to be sent: sc.dcm, sr.dcm, result.json, send.json,
                            and sc.dcm.sent / sr.dcm.sent once the destination has stored each
    dead-letter/<key>/      results given up on after the retry limit, with reason.json
    failed/<key>.dcm        instances the cascade could not read, with <key>.json saying why
    ledger/<key>.json       one small record per instance and bundle: state, reason, timings (no patient data)
    node.json               the running node's settings and recent errors, for ``olvf-serve status``

``key`` is a hash of the instance's SOP Instance UID and the bundle's
manifest sha256: the same instance received again finds its key and is not
processed again for the same bundle; another bundle processes it anew. Keys
and the other hashes here reveal no UID.

Writes are temporary file, fsync, rename, fsync of the folder; moving
between states is a rename within the spool (one file system).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import olvf.json_text as json_text
from olvf.errors import OlvfError
from olvf.text import printable

TMP, INBOX, OUTBOX, DEAD_LETTER, FAILED, LEDGER = "tmp", "inbox", "outbox", "dead-letter", "failed", "ledger"
NODE_STATE = "node.json"
LOCK = "node.lock"
RESULT = "result.json"
SEND_STATE = "send.json"
REASON = "reason.json"
SENT_SUFFIX = ".sent"

# Final and holding states: an instance in one of them was received before, so a copy is acknowledged, not redone.
HELD_STATES = frozenset({"waiting-to-send", "sent", "ignored", "failed", "dead-letter"})
# Errors of the file system that mean "no room or no right to write": answered as out of resources.
RESOURCE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO, errno.ENOENT}
)


class SpoolError(OlvfError):
    """The spool cannot be used (not writable, held by another node)."""


def _hash(*parts: str) -> str:
    # JSON keeps the parts apart: ("1.2", "3") and ("1.", "23") must not collide.
    return hashlib.sha256(json.dumps(["olvf-node/1", *parts]).encode()).hexdigest()


def instance_key(sop_instance_uid: str, bundle_sha256: str) -> str:
    """The spool's name for one instance screened by one bundle (32 hex digits, reveals no UID)."""
    return _hash("instance", str(sop_instance_uid).strip("\x00 "), bundle_sha256)[:32]


def uid_hash(uid: str) -> str:
    """A short hash of a UID (a study's), to tell studies apart in logs without naming them."""
    return _hash("uid", str(uid).strip("\x00 "))[:12]


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes, *, tmp_dir: Path | None = None, mtime_ns: int | None = None) -> None:
    """Write ``data`` to ``path`` so that after this returns it survives a crash or a power cut.

    The bytes go to a temporary file (in ``tmp_dir``, else beside ``path``),
    which is fsynced, renamed into place, and the folder fsynced. On any
    error the temporary file is removed: no half-written file remains, and
    ``path`` is as it was.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=tmp_dir or path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            view = memoryview(data)
            while view:
                written = handle.write(view)
                view = view[written:]
            handle.flush()
            os.fsync(handle.fileno())
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_durable(path, (json_text.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a record cut short by a crash before its rename cannot exist; anything else is not ours


class Spool:
    """One node's spool folder; thread-safe for the SCP's threads, the worker and the sender."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / TMP
        self.inbox = self.root / INBOX
        self.outbox = self.root / OUTBOX
        self.dead_letter = self.root / DEAD_LETTER
        self.failed = self.root / FAILED
        self.ledger = self.root / LEDGER
        self._ledger_lock = threading.Lock()

    def relative(self, text: str) -> str:
        """``text`` with every path under the spool named relative to it (``inbox/<key>.dcm``).

        Reasons are shown by ``olvf-serve status`` and kept in the ledger:
        where the spool lives on the host is none of their business.
        """
        if not self.root.is_absolute():
            return text
        for root in dict.fromkeys((str(self.root), printable(self.root))):  # as messages show a path: escaped
            text = text.replace(root + os.sep, "").replace(root, "the spool")
        return text

    # -- set-up ---------------------------------------------------------------
    def create(self) -> None:
        try:
            for folder in (self.tmp, self.inbox, self.outbox, self.dead_letter, self.failed, self.ledger):
                folder.mkdir(parents=True, exist_ok=True)
            probe = self.tmp / ".write-test"
            write_durable(probe, b"olvf")
            probe.unlink()
        except OSError as exc:
            raise SpoolError(
                f"spool {self.root}: cannot write there ({exc.strerror or exc}); give a folder this user can write"
            ) from None

    def recover(self) -> dict[str, int]:
        """Clean what a crash left half-done; returns counts of what was found, for the start-up line.

        Partial receives in tmp/ were never acknowledged (the sender will send
        them again) and are removed; so are staging folders of results. An
        inbox entry whose results are already waiting (crash between writing
        them and removing the entry) is removed; the rest is resumed as it is.
        """
        found = {"partial": 0, "inbox": 0, "outbox": 0}
        for item in self.tmp.iterdir():
            _remove(item)
            found["partial"] += 1
        for item in self.outbox.iterdir():
            if item.name.startswith("."):
                _remove(item)
                found["partial"] += 1
        for entry in self.inbox.glob("*.dcm"):
            key = entry.stem
            record = self.record_of(key)
            if (self.outbox / key).is_dir() or (record and record.get("state") in HELD_STATES - {"failed"}):
                entry.unlink()
            else:
                found["inbox"] += 1
        for item in self.inbox.iterdir():
            if item.name.startswith("."):
                _remove(item)
                found["partial"] += 1
        found["outbox"] = sum(1 for _ in self.outbox_entries())
        fsync_dir(self.inbox)
        return found

    # -- receiving ----------------------------------------------------------
    def holds(self, key: str) -> str | None:
        """Where an instance already is, when it was received before (None: new, or refused before)."""
        if (self.inbox / f"{key}.dcm").exists():
            return "waiting to be screened"
        if (self.outbox / key).is_dir():
            return "results waiting to be sent"
        record = self.record_of(key)
        if record and record.get("state") in HELD_STATES:
            return str(record["state"])
        return None

    def receive(self, key: str, data: bytes, received_ns: int) -> Path:
        """Store one received instance durably (raises OSError, leaving nothing behind, when it cannot)."""
        target = self.inbox / f"{key}.dcm"
        write_durable(target, data, tmp_dir=self.tmp, mtime_ns=received_ns)
        return target

    def waiting(self, limit: int) -> list[Path]:
        """The oldest ``limit`` instances waiting to be screened, in order of arrival."""
        entries = []
        for path in self.inbox.glob("*.dcm"):
            try:
                entries.append((path.stat().st_mtime_ns, path.name, path))
            except FileNotFoundError:
                continue
        return [path for _, _, path in sorted(entries)[:limit]]

    def queue_lengths(self) -> dict[str, int]:
        return {
            "waiting_to_screen": sum(1 for _ in self.inbox.glob("*.dcm")),
            "waiting_to_send": sum(1 for _ in self.outbox_entries()),
            "dead_letter": sum(1 for p in self.dead_letter.iterdir() if p.is_dir()) if self.dead_letter.exists() else 0,
            "failed": sum(1 for _ in self.failed.glob("*.dcm")) if self.failed.exists() else 0,
        }

    # -- results --------------------------------------------------------------
    def outbox_entries(self) -> Iterator[Path]:
        if not self.outbox.exists():
            return
        for item in self.outbox.iterdir():
            if item.is_dir() and not item.name.startswith("."):
                yield item

    def put_results(self, key: str, files: dict[str, bytes], result: dict[str, Any]) -> Path:
        """Write a study's results into outbox/<key>/ at once (staged, fsynced, renamed), then drop its inbox entry."""
        target = self.outbox / key
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".partial", dir=self.outbox))
        try:
            for name, data in files.items():
                _write_synced(staging / name, data)
            _write_synced(staging / RESULT, _json_bytes(result))
            fsync_dir(staging)
            if target.exists():  # a crash after an earlier rename: the same results, kept
                shutil.rmtree(staging)
            else:
                os.replace(staging, target)
            fsync_dir(self.outbox)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.drop_inbox(key)
        return target

    def drop_inbox(self, key: str) -> None:
        (self.inbox / f"{key}.dcm").unlink(missing_ok=True)
        fsync_dir(self.inbox)

    def set_aside(self, key: str, reason: dict[str, Any]) -> None:
        """An instance the cascade could not use: kept in failed/ with why, out of the queue."""
        write_json(self.failed / f"{key}.json", reason)
        source = self.inbox / f"{key}.dcm"
        if source.exists():
            os.replace(source, self.failed / f"{key}.dcm")
            fsync_dir(self.failed)
            fsync_dir(self.inbox)

    def mark_sent(self, entry: Path, name: str) -> None:
        _write_synced(entry / f"{name}{SENT_SUFFIX}", b"")
        fsync_dir(entry)

    def finish(self, entry: Path) -> None:
        """Results all stored at the destination: the entry goes (its record says so already)."""
        shutil.rmtree(entry)
        fsync_dir(self.outbox)

    def give_up(self, entry: Path, reason: dict[str, Any]) -> Path:
        """Move results past the retry limit to dead-letter/, with the reason inside."""
        write_json(entry / REASON, reason)
        target = self.dead_letter / entry.name
        if target.exists():
            shutil.rmtree(target)
        os.replace(entry, target)
        fsync_dir(self.dead_letter)
        fsync_dir(self.outbox)
        return target

    def requeue(self, key: str) -> None:
        """Put dead-lettered results back in the outbox, attempts reset (the destination has been fixed)."""
        entry = self.dead_letter / key
        for name in (REASON, SEND_STATE):
            (entry / name).unlink(missing_ok=True)
        self.record(key, state="waiting-to-send", reason=None, attempts=0, last_error=None, requeued_at=time.time())
        os.replace(entry, self.outbox / key)
        fsync_dir(self.outbox)
        fsync_dir(self.dead_letter)

    # -- ledger ---------------------------------------------------------------
    def record_of(self, key: str) -> dict[str, Any] | None:
        return read_json(self.ledger / f"{key}.json")

    def record(self, key: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the instance's ledger record (durably) and return it."""
        with self._ledger_lock:
            record = self.record_of(key) or {"key": key}
            record.update(fields)
            record["updated_at"] = time.time()
            write_json(self.ledger / f"{key}.json", record)
            return record

    def records(self) -> list[dict[str, Any]]:
        found = []
        if self.ledger.exists():
            for path in self.ledger.glob("*.json"):
                record = read_json(path)
                if record is not None:
                    found.append(record)
        return sorted(found, key=lambda r: r.get("updated_at", 0.0))


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json_text.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _remove(item: Path) -> None:
    if item.is_dir() and not item.is_symlink():
        shutil.rmtree(item, ignore_errors=True)
    else:
        item.unlink(missing_ok=True)
