"""What ``olvf-serve status`` shows of a running node besides the spool: its settings and recent errors.

Kept in ``node.json`` in the spool, rewritten atomically when something
changes. Errors are the node's own words (a full spool, an unreachable
destination, a backend failure), never data from an instance.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from olvf.runtime.node.spool import NODE_STATE, write_json

MAX_ERRORS = 20


class NodeState:
    def __init__(self, spool_root: Path, settings: dict[str, Any]) -> None:
        self.path = Path(spool_root) / NODE_STATE
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {
            "pid": os.getpid(),
            "started_at": time.time(),
            "stopped_at": None,
            **settings,
            "destination_down_since": None,
            "errors": [],
        }

    def error(self, message: str) -> None:
        with self._lock:
            errors = self._data["errors"]
            errors.append({"at": time.time(), "error": message})
            del errors[:-MAX_ERRORS]
            self._save()

    def destination(self, up: bool, reason: str | None = None) -> None:
        """Note that the destination answered (up) or not; returns nothing, logs nothing."""
        with self._lock:
            was_down = self._data["destination_down_since"] is not None
            if up and was_down:
                self._data["destination_down_since"] = None
                self._save()
            elif not up and not was_down:
                self._data["destination_down_since"] = time.time()
                self._data["destination_down_reason"] = reason
                self._save()

    @property
    def destination_down(self) -> bool:
        return self._data["destination_down_since"] is not None

    def set(self, **fields: Any) -> None:
        with self._lock:
            self._data.update(fields)
            self._save()

    def _save(self) -> None:
        try:
            write_json(self.path, self._data)
        except OSError:
            pass  # a full spool is already being reported by whoever hit it; status still reads the rest
