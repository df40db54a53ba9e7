"""The node's worker: screens what is waiting in the spool, studies that arrived together in one batch.

Each step takes every instance waiting (up to ``batch``), oldest first, and
never waits for more: a study alone goes at once, studies that arrived
while the previous batch ran go together, through one detector call and
one ensemble call (:meth:`StudyPipeline.run_batch`), on the bundle loaded
once at start. Per instance:

- the header does not fit the screening rule, or the intended-use gate
  refuses the study: a "not assessed" Secondary Capture and SR (no findings)
  are sent, or with ``not_assessed_results = false`` the instance is set
  aside as ``ignored`` with the reason (a rule's skip) and nothing is sent;
- the header or pixels cannot be used (a corrupt file), or anything else
  goes wrong with this one instance, whatever the exception: ``failed``,
  the file kept in ``failed/`` with a one-line reason that names files
  relative to the spool, never retried (so it cannot hold up the queue);
- screened: the Secondary Capture and the SR (the DICOM results writers,
  UIDs derived from the source instance and the bundle) go into the outbox
  in one rename, then the inbox entry is removed.

A bundle or backend failure (``BundleError``, ``BackendError``) or a spool
error (``OSError``: a full disk) is nobody's input's fault: the batch stays
waiting and is tried again after a pause, and the error shows in status.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olvf.errors import InputError, OlvfError
from olvf.runtime.node.config import NodeConfig
from olvf.runtime.node.spool import Spool, uid_hash
from olvf.runtime.node.state import NodeState
from olvf.runtime.node.studylog import StudyLog
from olvf.runtime.study.pipeline import StudyPipeline
from olvf.runtime.study.results import InputFailure, StudyResult
from olvf.runtime.writers.report import DEMO_WARNING, ReportContext
from olvf.text import printable

SC_FILE = "sc.dcm"
SR_FILE = "sr.dcm"
RESULT_FILES = (SC_FILE, SR_FILE)  # sent in this order: the SR references the Secondary Capture
IDLE_POLL_S = 1.0
BACKEND_PAUSE_S = (5.0, 60.0)  # first and longest pause after a bundle or backend failure


@dataclass(frozen=True)
class Waiting:
    key: str
    path: Path
    received_at: float
    source: Any  # DicomSource
    #: the node's screening rule skipped it: analysed no further, answered "not assessed" with this reason
    skipped: str | None = None


class Worker:
    def __init__(
        self,
        config: NodeConfig,
        spool: Spool,
        pipeline: StudyPipeline,
        context: ReportContext,
        log: StudyLog,
        state: NodeState,
        on_results: Callable[[], None],
    ) -> None:
        self.config = config
        self.spool = spool
        self.pipeline = pipeline
        self.context = context
        self.log = log
        self.state = state
        self.on_results = on_results
        self.wake = threading.Event()
        self._pause = 0.0

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: screen what waits; the batch in hand is always finished before stopping."""
        while not stop.is_set():
            self.wake.clear()
            try:
                done = self.step()
            except (OlvfError, OSError) as exc:  # the bundle, the backend or the spool: nothing the inputs did
                what = str(exc) if isinstance(exc, OlvfError) else f"spool error ({exc.strerror or exc})"
                self._wait_after(f"{type(exc).__name__}: {what}", stop)
                continue
            except Exception as exc:  # a bug: say so and keep the node alive; the studies stay waiting
                self._wait_after(f"unexpected {type(exc).__name__}", stop)
                continue
            self._pause = 0.0
            if not done:
                self.wake.wait(IDLE_POLL_S)

    def _wait_after(self, what: str, stop: threading.Event) -> None:
        self._pause = min(BACKEND_PAUSE_S[1], max(BACKEND_PAUSE_S[0], self._pause * 2))
        self.state.error(f"screening stopped by {what}; retrying in {self._pause:.0f} s")
        self.log.node(
            f"screening stopped by {what}; the studies stay waiting, retrying in {self._pause:.0f} s",
            level=logging.ERROR,
        )
        stop.wait(self._pause)

    def step(self) -> int:
        """Screen one batch of what is waiting now; returns how many instances were taken."""
        paths = self.spool.waiting(self.pipeline.batch)
        screen: list[Waiting] = []
        for path in paths:
            item = self._triage(path)
            if item is not None:
                screen.append(item)
        if screen:
            self._screen(screen)
        return len(paths)

    def _triage(self, path: Path) -> Waiting | None:
        """The instance's header against the screening rule; whatever goes wrong reading it is this instance's."""
        key = path.stem
        try:
            received_at = path.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            return None
        try:
            return self._admit(key, path, received_at)
        except InputError as exc:
            self._failed(key, received_at, str(exc))
        except (OlvfError, OSError):
            raise  # the bundle, the backend or the spool: nothing this instance did, so it waits and is retried
        except Exception as exc:  # a header pydicom chokes on in a way nobody foresaw: set aside, never retried
            self._failed(key, received_at, f"unexpected {_failure(exc)} while reading the header")
        return None

    def _admit(self, key: str, path: Path, received_at: float) -> Waiting | None:
        from olvf.runtime.inputs.dicom_header import undecodable_element
        from olvf.runtime.writers.dicom_source import read_dicom_source

        source = read_dicom_source(path)
        header = source.header
        problem = undecodable_element(header)  # the SCP refuses these; a spool from an older node may hold some
        if problem is not None:
            raise InputError(f"{path}: the header does not decode at {problem}; the sender must send it again")
        reason = self.config.rule.reason_to_skip(
            str(header.get("Modality") or ""),
            str(header.get("BodyPartExamined") or ""),
            str(header.get("ViewPosition") or ""),
        )
        if reason is not None and self.config.rule.not_assessed_results:
            return Waiting(key, path, received_at, source, skipped=f"this node's screening rule: {reason}")
        if reason is not None:
            self.spool.record(
                key,
                state="ignored",
                reason=reason,
                received_at=received_at,
                study=uid_hash(source.study_instance_uid),
                screened_at=time.time(),
            )
            self.spool.drop_inbox(key)
            self.log.study(key, "ignored", reason)
            return None
        return Waiting(key, path, received_at, source)

    def _screen(self, batch: list[Waiting]) -> None:
        started = time.time()
        try:
            refusals = {i: item.skipped for i, item in enumerate(batch) if item.skipped is not None}
            outcomes = self.pipeline.run_batch([str(item.path) for item in batch], refusals=refusals)
        except OlvfError:
            raise
        except Exception as exc:  # a bug: isolate it to the study that causes it rather than stall the queue
            if len(batch) > 1:
                for item in batch:
                    self._screen([item])
                return
            self._failed(batch[0].key, batch[0].received_at, f"internal error while screening ({_failure(exc)})")
            return
        for item, outcome in zip(batch, outcomes):
            if isinstance(outcome, InputFailure):
                self._failed(item.key, item.received_at, str(outcome.error))
                continue
            try:
                self._results(item, outcome, started, len(batch))
            except OSError:
                raise  # the spool (a full disk): the study stays waiting, the worker pauses and tries again
            except Exception as exc:  # the writers refused this study's header or findings: this study only
                self._failed(item.key, item.received_at, f"DICOM results could not be built ({_failure(exc)})")

    def _results(self, item: Waiting, study: StudyResult, started: float, batch_size: int) -> None:
        from olvf.runtime.writers.dicom_results import encode_dicom_results
        from olvf.runtime.writers.dicom_source import identity_cuts
        from olvf.runtime.writers.dicom_study import study_findings
        from olvf.runtime.writers.overlay import render_study

        overlay, _, _ = render_study(study, DEMO_WARNING if self.context.demo else None)
        # The overlay is drawn BGR (OpenCV); DICOM RGB wants it the other way round.
        sc, sr, _ = encode_dicom_results(item.source, overlay[..., ::-1], study_findings(study, self.context))
        screened_at = time.time()
        summary = {
            "received_at": item.received_at,
            "screening_started_at": started,
            "screened_at": screened_at,
            "study": uid_hash(item.source.study_instance_uid),
            "vertebrae": len(study),
            "assessed": study.assessed,
            "not_assessed": None if study.assessed else study.applicability.reason,
            "mri_recommended": study.decision.recommended,
            "batch": batch_size,
        }
        self.spool.put_results(item.key, {SC_FILE: sc, SR_FILE: sr}, summary)
        self.spool.record(item.key, state="waiting-to-send", reason=None, **summary)
        # the reason names header values and rules, never patient data (see applicability)
        what = f"{len(study)} vertebrae" if study.assessed else f"not assessed ({study.applicability.reason})"
        self.log.study(
            item.key,
            "screened",
            f"study {summary['study']}, {what}, batch of {batch_size}, "
            f"{screened_at - item.received_at:.2f} s after receipt",
        )
        cut = identity_cuts(item.source.header)
        if cut:  # names only: the values are patient data
            self.log.study(
                item.key,
                "identity cut",
                f"{', '.join(cut)} longer than the VR allows in the source: cut to that length in the SC and SR",
                level=logging.WARNING,
            )
        self.on_results()

    def _failed(self, key: str, received_at: float, reason: str) -> None:
        """Set one instance aside for good: ledger record, failed/<key>.dcm and .json, one log line."""
        # The reader's messages start with the file's path; here the key names the file, so the path goes.
        reason = " ".join(reason.split())
        path = self.spool.inbox / f"{key}.dcm"
        for shown in dict.fromkeys((str(path), printable(path))):
            reason = reason.removeprefix(f"{shown}: ")
        reason = self.spool.relative(reason)
        # The record first: the SCP must find the key held at every moment (see Spool.holds).
        self.spool.record(key, state="failed", reason=reason, received_at=received_at, screened_at=time.time())
        self.spool.set_aside(key, {"key": key, "reason": reason, "at": time.time()})
        self.log.study(key, "failed", f"{reason}; kept in failed/", level=logging.WARNING)


def _failure(exc: BaseException) -> str:
    """An unexpected exception as its class and where it was raised (no message: it may quote a value)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {Path(last.filename).name}:{last.lineno}"
