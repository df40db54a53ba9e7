"""The node's sender: results from the outbox to the destination by C-STORE, each stored there once.

Due results (oldest first) go over one association. Each object is
marked sent (an fsynced ``<name>.sent`` file) as soon as the destination
answers success, so a retry, or a restart after a crash, sends only what
the destination has not confirmed; once both objects are stored the
instance's record says ``sent`` and its outbox entry goes. The window
where a crash can still repeat a store is between the destination's
answer and that fsync (milliseconds); a repeat then carries the same SOP
Instance UID (derived from the source and the bundle), which a PACS files
as the same instance, not a second one.

While the destination is down or refuses, each result waits
``RetryPolicy.delay(failures)`` (doubling) before its next attempt; after
``max_attempts`` failures, or at once for a refusal that a retry cannot
change (SOP class not supported, data set not understood), it goes to
``dead-letter/`` with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olvf.runtime.node.config import NodeConfig
from olvf.runtime.node.spool import RESULT, SEND_STATE, SENT_SUFFIX, Spool, read_json, write_json
from olvf.runtime.node.state import NodeState
from olvf.runtime.node.studylog import StudyLog
from olvf.runtime.node.worker import RESULT_FILES

IDLE_POLL_S = 1.0
ERROR_PAUSE_S = 5.0
PER_ASSOCIATION = 32  # results sent over one association before it is released and the queue looked at again
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
STRUCTURED_REPORT = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR, as IHE AIR asks
EXPLICIT_VR_LE, IMPLICIT_VR_LE, RLE_LOSSLESS = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.5"
#: The presentation contexts the sender proposes, one per entry: the SC as written (RLE Lossless) and, for a
#: PACS that takes it only uncompressed, decompressed (the same pixels); the SR uncompressed.
RESULT_CONTEXTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (SECONDARY_CAPTURE, (RLE_LOSSLESS,)),
    (SECONDARY_CAPTURE, (EXPLICIT_VR_LE, IMPLICIT_VR_LE)),
    (STRUCTURED_REPORT, (EXPLICIT_VR_LE, IMPLICIT_VR_LE)),
)
STORED = {0x0000, 0xB000, 0xB006, 0xB007}  # success, and the warnings that still mean "stored" (PS3.4 B.2.3)


def as_accepted(assoc: Any, dataset: Any) -> Any:
    """The data set in a transfer syntax the destination accepted for its class: as written where it can, else
    decompressed (lossless: the same pixels and the same SOP Instance UID) where only an uncompressed context
    was accepted. Where neither was, pynetdicom's refusal says so (see ``_send_entry``)."""
    from pydicom.uid import UID

    sop, syntax = str(dataset.SOPClassUID), UID(dataset.file_meta.TransferSyntaxUID)
    accepted = [(str(cx.abstract_syntax), UID(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts]
    if (sop, syntax) in accepted or not syntax.is_compressed:
        return dataset
    if any(s == sop and not t.is_compressed for s, t in accepted):
        dataset.decompress(generate_instance_uid=False)
    return dataset


def permanent(status: int) -> bool:
    """Refusals a retry cannot change: SOP class not supported, not authorised, data set mismatch, not understood."""
    return status in (0x0122, 0x0124) or 0xA900 <= status <= 0xA9FF or 0xC000 <= status <= 0xCFFF


@dataclass
class Due:
    entry: Path
    received_at: float
    failures: int


class SendFailure(Exception):
    def __init__(self, reason: str, *, permanent: bool = False, association_lost: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.association_lost = association_lost


class Sender:
    def __init__(self, config: NodeConfig, spool: Spool, log: StudyLog, state: NodeState) -> None:
        self.config = config
        self.spool = spool
        self.log = log
        self.state = state
        self.wake = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: send what is due; the result in hand is finished before stopping."""
        while not stop.is_set():
            self.wake.clear()
            try:
                wait = self.step(stop)
            except Exception as exc:  # the spool itself (OSError), or a bug: report, pause, go on
                what = f"spool error ({exc.strerror or exc})" if isinstance(exc, OSError) else type(exc).__name__
                self.state.error(f"sending paused by {what}")
                self.log.node(f"sending paused by {what}; retrying in {ERROR_PAUSE_S:.0f} s", level=logging.ERROR)
                stop.wait(ERROR_PAUSE_S)
                continue
            if wait is None or wait > 0:
                self.wake.wait(IDLE_POLL_S if wait is None else min(wait, IDLE_POLL_S))

    def step(self, stop: threading.Event | None = None) -> float | None:
        """Send what is due now; returns seconds until the next result falls due (0: more is due now), or None."""
        now = time.time()
        due: list[Due] = []
        next_at: float | None = None
        for entry in self.spool.outbox_entries():
            send = read_json(entry / SEND_STATE) or {}
            at = float(send.get("next_at", 0.0))
            if at <= now:
                result = read_json(entry / RESULT) or {}
                due.append(Due(entry, float(result.get("received_at", 0.0)), int(send.get("failures", 0))))
            else:
                next_at = at if next_at is None else min(next_at, at)
        if not due:
            return None if next_at is None else max(0.0, next_at - now)
        due.sort(key=lambda d: (d.received_at, d.entry.name))
        self._send(due[:PER_ASSOCIATION], stop)
        return 0.0 if len(due) > PER_ASSOCIATION else (None if next_at is None else max(0.0, next_at - now))

    def _associate(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.config.ae_title)
        for sop_class, syntaxes in RESULT_CONTEXTS:
            ae.add_requested_context(sop_class, list(syntaxes))
        ae.connection_timeout = 10
        ae.acse_timeout = 30
        ae.dimse_timeout = 120
        ae.network_timeout = 120
        destination = self.config.destination
        return ae.associate(destination.host, destination.port, ae_title=destination.ae_title)

    def _send(self, due: list[Due], stop: threading.Event | None) -> None:
        assoc = self._associate()
        if not assoc.is_established:
            reason = (
                "association rejected by the destination"
                if assoc.is_rejected
                else "destination unreachable (no association)"
            )
            self._destination_down(reason, len(due))
            for item in due:
                self._failed(item, reason, quiet=True)
            return
        self._destination_up()
        try:
            for index, item in enumerate(due):
                if stop is not None and stop.is_set() and index:
                    break  # SIGTERM: the result in hand is finished, the rest waits for the next start
                try:
                    self._send_entry(assoc, item)
                except SendFailure as failure:
                    self._failed(item, failure.reason, permanent=failure.permanent)
                    if failure.association_lost:
                        for rest in due[index + 1 :]:
                            self._failed(rest, failure.reason, quiet=True)
                        self._destination_down(failure.reason, len(due) - index)
                        return
        finally:
            if assoc.is_established:
                assoc.release()

    def _send_entry(self, assoc: Any, item: Due) -> None:
        import pydicom

        entry = item.entry
        for name in RESULT_FILES:
            if (entry / f"{name}{SENT_SUFFIX}").exists():
                continue  # stored before a crash or a failed attempt: never sent twice
            dataset = as_accepted(assoc, pydicom.dcmread(entry / name))
            try:
                status = assoc.send_c_store(dataset)
            except ValueError:  # pynetdicom: no accepted presentation context for this SOP class
                raise SendFailure(f"the destination accepts no {dataset.SOPClassUID.name}", permanent=True) from None
            if not status or "Status" not in status:
                raise SendFailure(
                    "no answer from the destination (association aborted or timed out)", association_lost=True
                )
            code = int(status.Status)
            if code not in STORED:
                raise SendFailure(
                    f"destination answered status 0x{code:04X} for the {_role(name)}", permanent=permanent(code)
                )
            self.spool.mark_sent(entry, name)
        stored_at = time.time()
        result = read_json(entry / RESULT) or {}
        received_at = float(result.get("received_at", stored_at))
        key = entry.name
        self.spool.record(
            key,
            state="sent",
            reason=None,
            stored_at=stored_at,
            time_to_result_s=round(stored_at - received_at, 3),
            attempts=item.failures + 1,
        )
        self.spool.finish(entry)
        destination = self.config.destination
        self.log.study(
            key,
            "sent",
            f"SC+SR stored at {destination}; {stored_at - received_at:.2f} s from receipt to stored"
            + (f" (after {item.failures} failed attempts)" if item.failures else ""),
        )

    def _failed(self, item: Due, reason: str, *, permanent: bool = False, quiet: bool = False) -> None:
        failures = item.failures + 1
        key = item.entry.name
        retry = self.config.retry
        if permanent or failures >= retry.max_attempts:
            why = reason if permanent else f"{reason}; gave up after {failures} attempts"
            self.spool.record(key, state="dead-letter", reason=why, attempts=failures, dead_letter_at=time.time())
            self.spool.give_up(item.entry, {"key": key, "reason": why, "attempts": failures, "at": time.time()})
            self.log.study(key, "dead-letter", f"{why}; results kept in dead-letter/", level=logging.ERROR)
            return
        delay = retry.delay(failures)
        write_json(
            item.entry / SEND_STATE, {"failures": failures, "next_at": time.time() + delay, "last_error": reason}
        )
        self.spool.record(key, attempts=failures, last_error=reason)
        if not quiet or failures == 1:
            self.log.study(
                key,
                "retrying",
                f"{reason} (attempt {failures} of {retry.max_attempts}); next in {delay:.0f} s",
                level=logging.WARNING,
            )

    def _destination_down(self, reason: str, waiting: int) -> None:
        if not self.state.destination_down:
            self.log.node(
                f"destination {self.config.destination}: {reason}; {waiting} result(s) waiting, retrying with backoff",
                level=logging.WARNING,
            )
        self.state.destination(False, reason)
        self.state.error(f"sending to {self.config.destination}: {reason}")

    def _destination_up(self) -> None:
        if self.state.destination_down:
            self.log.node(f"destination {self.config.destination} answers again")
        self.state.destination(True)


def _role(name: str) -> str:
    return "Secondary Capture" if name.startswith("sc") else "Structured Report"
