"""The node's log: one line per study event, naming the study by a hash, never by patient or UID.

Lines go to the ``olvf.node`` logger (stderr under systemd, so the journal
keeps them)::

    2026-11-27 18:40:02,113 INFO study 3f9c2a71d0e4b5a8 sent: SC+SR stored at PACS@10.0.0.5:104; 2.41 s ...

The 16 hex digits are the start of the spool key (a hash of the SOP
Instance UID and the bundle), so a line can be matched with ``olvf-serve
status`` and the spool, and a UID can be checked against it by hashing, but
not read from it. Messages are built only from coded values, counts,
timings and the node's own settings.
"""

from __future__ import annotations

import logging

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


def configure_logging(level: int = logging.INFO) -> None:
    """Node lines to stderr; pynetdicom's own chatter held at WARNING (its DEBUG output dumps data sets)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    for noisy in ("pynetdicom", "highdicom", "pydicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
