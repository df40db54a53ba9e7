"""The node's log: one line per study event, naming the study by a hash, never by patient or UID.

Lines go to the ``olvf.node`` logger (stderr under systemd, so the journal
keeps them)::

    2026-11-27 18:40:02,113 INFO study 3f9c2a71d0e4b5a8 sent: SC+SR stored at PACS@10.0.0.5:104; 2.41 s ...

Lines are written to a copy of file descriptor 2 taken at start
(:func:`stderr_copy`), not to fd 2 itself: the reader points fd 2 at a file
for the time of each decode, to catch what native decoders print there
(:func:`olvf.runtime.inputs.codecs.native_stderr`), and a line another
thread wrote meanwhile would otherwise land in that study's notes instead
of the journal.

The 16 hex digits are the start of the spool key (a hash of the SOP
Instance UID and the bundle), so a line can be matched with ``olvf-serve
status`` and the spool, and a UID can be checked against it by hashing, but
not read from it. Messages are built only from coded values, counts,
timings and the node's own settings.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

LOGGER_NAME = "olvf.node"
KEY_DIGITS = 16


def short(key: str) -> str:
    return key[:KEY_DIGITS]


class StudyLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    def study(self, key: str, state: str, detail: str, *, level: int = logging.INFO) -> None:
        self.logger.log(level, "study %s %s: %s", short(key), state, detail)

    def node(self, message: str, *, level: int = logging.INFO) -> None:
        self.logger.log(level, "node: %s", message)


def stderr_copy() -> TextIO:
    """A line-buffered text stream on a duplicate of file descriptor 2, taken now.

    It reaches where stderr went at start whatever fd 2 is pointed at later;
    ``sys.stderr`` where there is no fd 2 to copy (a daemon without one).
    """
    try:
        fd = os.dup(2)
    except OSError:
        return sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace")


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Node lines to ``stream`` (by default a copy of fd 2, see :func:`stderr_copy`); pynetdicom's own chatter
    held at WARNING (its DEBUG output dumps data sets)."""
    handler = logging.StreamHandler(stream if stream is not None else stderr_copy())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    for noisy in ("pynetdicom", "highdicom", "pydicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def node_stderr(level: int = logging.INFO) -> Iterator[None]:
    """olvf-serve's process: node lines, and every thread's tracebacks and warnings, to one copy of fd 2.

    Inside the block ``sys.stderr`` is that copy too, so nothing Python
    writes from another thread is caught by a decode's redirection of fd 2;
    only native code's own writes to fd 2 are, as they are meant to be.
    """
    stream = stderr_copy()
    configure_logging(level, stream)
    previous, sys.stderr = sys.stderr, stream
    try:
        yield
    finally:
        sys.stderr = previous
