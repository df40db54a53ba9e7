"""Changing a published bundle in place: one writer at a time, the manifest replaced atomically.

New files get new names, so the live manifest stays valid until the new one
replaces it in one rename; an interrupted update leaves the bundle as it was.
Used for TensorRT engines (:mod:`olvf.runtime.bundle_engines`), INT8 graphs
(:mod:`olvf.export.quantize`) and verified routes (:mod:`olvf.runtime.routes`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from olvf.errors import BundleError
from olvf.runtime.atomic import write_text_atomic
from olvf.runtime.manifest import MANIFEST_NAME, Manifest

Progress = Callable[[str], None]


@contextlib.contextmanager
def bundle_lock(
    folder: Path, progress: Progress = lambda _line: None, waiting: str = "another olvf is updating this bundle"
) -> Iterator[None]:
    """One update per bundle at a time: two processes starting together must not both rebuild.

    The lock is on the bundle folder itself, so no lock file is left in it.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, updates stay atomic on their own
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"{waiting}; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_writable(path: Path, what: str) -> None:
    if not os.access(path, os.W_OK | os.X_OK):
        raise BundleError(
            f"cannot write {what} into {path} (read-only); give olvf write access to the bundle folder "
            "(in Docker: mount it without :ro)"
        )


def replace_manifest(folder: Path, manifest: Manifest) -> None:
    """Check and write ``manifest`` over the bundle's, in one rename."""
    manifest.validate()
    write_text_atomic(Path(folder) / MANIFEST_NAME, manifest.to_json(), force=True)
