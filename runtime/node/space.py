"""The spool's space as a budget: an instance is taken only where the results of everything waiting still fit.

A burst into a small spool with the PACS down once filled it with received
instances and left no room for their results: nothing could be screened, so
nothing could be sent, so nothing ever left (#27 F2). Each instance waiting
to be screened therefore holds a reserve for its results, and the SCP refuses
(0xA700, out of resources) an instance whose own size and reserve, added to
the reserves of those waiting, exceed what is free; results already in the
outbox leave as the PACS takes them. The reserve is a bound, not a guess: the
Secondary Capture is never larger than the source's rows x columns in RGB
(RLE adds at most one byte in 128), and the SR, ``result.json`` and the
file system's blocks fit in a margin.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from olvf.runtime.node.spool import Spool

RESULT_MARGIN = 1 << 20  # the SR (about 25 kB), result.json, the ledger record, file-system blocks
MIB = 1 << 20


def results_reserve(rows: int, columns: int) -> int:
    """The most bytes one study's results take in the outbox, for a source of ``rows`` x ``columns``."""
    rgb = int(rows) * int(columns) * 3
    return rgb + rgb // 128 + 2 * 4096 + RESULT_MARGIN


def _header_size(path: Path) -> tuple[int, int] | None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
        return int(ds.Rows), int(ds.Columns)
    except Exception:  # an instance the worker will set aside; its reserve falls back to its size
        return None


def _folder_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total


class SpaceBudget:
    """What the spool may still take. ``limit_bytes``: the most the spool may hold (None: the disk's free space
    only counts)."""

    def __init__(self, spool: Spool, limit_bytes: int | None = None) -> None:
        self.spool = spool
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._reserves: dict[str, int] = {}  # inbox key -> its results' reserve (read once per key)
        self._pending: dict[str, int] = {}  # being written now: its size and reserve

    def free(self) -> int:
        """Bytes the spool may still use: the disk's free space, less what the spool holds beyond its limit."""
        free = shutil.disk_usage(self.spool.root).free
        if self.limit_bytes is not None:
            free = min(free, self.limit_bytes - _folder_bytes(self.spool.root))
        return free

    def reserved(self) -> tuple[int, int]:
        """(bytes reserved for the results of what waits to be screened, how many wait)."""
        waiting = {p.stem: p for p in self.spool.inbox.glob("*.dcm")}
        for key in list(self._reserves):
            if key not in waiting:
                del self._reserves[key]  # screened (its results are written) or set aside
        for key, path in waiting.items():
            if key not in self._reserves:
                size = _header_size(path)
                try:
                    fallback = 3 * path.stat().st_size + RESULT_MARGIN
                except FileNotFoundError:
                    continue
                self._reserves[key] = results_reserve(*size) if size else fallback
        return sum(self._reserves.get(k, 0) for k in waiting), len(waiting)

    @contextmanager
    def admit(self, key: str, size: int, rows: int, columns: int) -> Iterator[str | None]:
        """Yields None where ``size`` bytes and the results' reserve fit beside everything waiting (they are
        held as pending until the block ends), else the reason to refuse, in figures (no patient data)."""
        need = size + results_reserve(rows, columns)
        with self._lock:
            held, waiting = self.reserved()
            pending = sum(self._pending.values())
            free = self.free()
            if need + held + pending > free:
                yield (
                    f"the spool has {free / MIB:.0f} MiB free and keeps {(held + pending) / MIB:.0f} MiB for the "
                    f"results of {waiting + len(self._pending)} waiting; this instance needs {need / MIB:.0f} MiB "
                    "with its results"
                )
                return
            self._pending[key] = need
        try:
            yield None
        finally:
            with self._lock:
                self._pending.pop(key, None)
                self._reserves[key] = need - size  # dropped by reserved() where it did not reach the inbox
