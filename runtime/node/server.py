"""One ``olvf-serve`` node: the spool, the SCP, the worker and the sender, started and stopped together.

Start: the spool is created and locked (one node per spool), what a crash
left half-done is cleaned (:meth:`Spool.recover`), the bundle is loaded
once, and only then does the SCP listen, so nothing is acknowledged that
cannot be screened. Stop (SIGTERM, SIGINT): the SCP stops listening and
drops open associations (the senders send again whatever was not answered
success), the worker finishes the batch in hand and writes its results,
the sender finishes the result in hand, and the spool is unlocked.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from olvf.errors import OlvfError
from olvf.runtime.bundle.signing import signature_line
from olvf.runtime.node.config import NodeConfig, auto_batch
from olvf.runtime.node.scp import Receiver, build_ae
from olvf.runtime.node.sender import Sender
from olvf.runtime.node.spool import LOCK, Spool, SpoolError
from olvf.runtime.node.state import NodeState
from olvf.runtime.node.studylog import StudyLog
from olvf.runtime.node.worker import Worker

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
JOIN_TIMEOUT_S = 600.0  # a batch in hand on a slow CPU; SIGKILL remains for anything longer


def quiet_dicom_warnings() -> None:
    """pydicom's and highdicom's warnings quote values (patient data): never on this process's stderr."""
    for module in ("pydicom", "highdicom", "pynetdicom"):
        warnings.filterwarnings("ignore", module=rf"{module}(\..*)?$")


class Node:
    def __init__(self, config: NodeConfig, log: StudyLog | None = None) -> None:
        self.config = config
        self.log = log or StudyLog()
        self.spool = Spool(config.spool)
        self.stopping = threading.Event()
        self._lock_fd: int | None = None
        self._threads: list[threading.Thread] = []
        self._ae: Any = None
        self.runtime: Any = None
        self.state: NodeState | None = None
        self.worker: Worker | None = None
        self.sender: Sender | None = None

    def start(self) -> None:
        import olvf
        from olvf.runtime.study.pipeline import StudyPipeline
        from olvf.runtime.writers.report import report_context

        quiet_dicom_warnings()
        self.spool.create()
        self._lock()
        found = self.spool.recover()
        options: dict[str, Any] = {"device": self.config.device} if self.config.device else {}
        if self.config.triton_url:  # the server decides the device; the node gives its priority
            options = {"triton_url": self.config.triton_url, "triton_priority": self.config.triton_priority}
        try:
            self.runtime = olvf.load(self.config.bundle, self.config.backend, **options)
            context = report_context(self.runtime, str(self.config.bundle))
            if self.config.batch is None:
                batch, batch_rule = auto_batch(self.runtime.runner.device)
            else:
                batch, batch_rule = self.config.batch, "--batch"
            pipeline = StudyPipeline(self.runtime, batch=batch)
            sha = self.runtime.bundle.manifest_sha256
            signature = signature_line(self.runtime.bundle.signature)
            backend = f"{context.backend['name']} {context.backend['device']} {context.backend['precision']}"
            state = NodeState(
                self.config.spool,
                {
                    "ae_title": self.config.ae_title,
                    "listening": f"{self.config.host}:{self.config.port}",
                    "destination": str(self.config.destination),
                    "bundle": str(self.config.bundle),
                    "bundle_sha256": sha,
                    "signature": {**self.runtime.bundle.signature.to_dict(), "line": signature},
                    "demo": context.demo,
                    "backend": backend,
                    "batch": batch,
                    "batch_rule": batch_rule,
                },
            )
            state.set()
            self.state = state
            self.sender = Sender(self.config, self.spool, self.log, state)
            self.worker = Worker(self.config, self.spool, pipeline, context, self.log, state, self.sender.wake.set)
            receiver = Receiver(self.config, self.spool, sha, self.log, self.worker.wake.set, state.error)
            self._ae = build_ae(self.config)
            try:
                self._ae.start_server(
                    (self.config.host, self.config.port), block=False, evt_handlers=receiver.handlers()
                )
            except OSError as exc:
                self._ae = None
                raise OlvfError(
                    f"cannot listen on {self.config.host}:{self.config.port} ({exc.strerror or exc}); choose another "
                    "--port or stop what uses it (ports under 1024 need CAP_NET_BIND_SERVICE)"
                ) from None
        except BaseException:
            if self.runtime is not None:
                self.runtime.close()
                self.runtime = None
            self._unlock()
            raise
        for name, target in (("worker", self.worker.run), ("sender", self.sender.run)):
            thread = threading.Thread(target=target, args=(self.stopping,), name=f"olvf-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        allowed = "any calling AE title" if self.config.allow_any else ", ".join(map(str, self.config.allowed))
        self.log.node(
            f"listening as {self.config.ae_title} on {self.config.host}:{self.config.port} (allowed: {allowed}); "
            f"results to {self.config.destination}; bundle {sha[:8]}{' DEMO' if context.demo else ''} on "
            f"{backend}, batch {batch} ({batch_rule}); spool {self.config.spool}: "
            f"{found['inbox']} waiting to screen, {found['outbox']} to send, {found['partial']} partial removed; "
            f"{signature}"
        )

    def stop(self) -> None:
        """Finish the study and the result in hand, then stop (idempotent)."""
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None
        self.stopping.set()
        if self.worker is not None and self.sender is not None:
            self.worker.wake.set()
            self.sender.wake.set()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_S)
        self._threads = []
        if self.runtime is not None:
            self.runtime.close()
            self.runtime = None
        if self.state is not None:
            self.state.set(stopped_at=time.time())
        self._unlock()

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        previous = {signum: signal.signal(signum, lambda *_: self.stopping.set()) for signum in STOP_SIGNALS}
        try:
            self.start()
            try:
                while not self.stopping.wait(1.0):
                    for thread in self._threads:
                        if not thread.is_alive():  # never silently half a node: say so and stop
                            self.log.node(f"{thread.name} ended unexpectedly; stopping", level=logging.ERROR)
                            self.stopping.set()
            finally:
                self.log.node("stopping: finishing the study and the result in hand")
                self.stop()
                self.log.node("stopped")
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _lock(self) -> None:
        path = Path(self.config.spool) / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolError(
                f"spool {self.config.spool} is in use by another olvf-serve (see its node.json); give each node "
                "its own spool"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def spool_in_use(spool: Path) -> bool:
    """Whether a node holds ``spool`` now (its lock is taken)."""
    path = Path(spool) / LOCK
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
