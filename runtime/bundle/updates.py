"""Changes olvf makes to a bundle after export, one at a time and all or nothing.

A bundle is shared (several containers, a validation run beside inference):
every change takes the bundle's lock (on the folder itself, so no lock file
is left in it), re-reads the manifest under it, and replaces ``manifest.json``
atomically. A change that fails leaves the bundle exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from olvf.atomic import write_text_atomic
from olvf.errors import BundleError
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.bundle.manifest import MANIFEST_NAME, Manifest

Progress = Callable[[str], None]


@contextlib.contextmanager
def bundle_lock(folder: Path, progress: Progress = lambda _line: None, doing: str = "changing") -> Iterator[None]:
    """Hold the bundle's lock: one change (or engine build) per bundle at a time, across processes."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock; each change stays atomic on its own
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another olvf is {doing} this bundle; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_writable(folder: Path, what: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BundleError(
            f"cannot write {what} into {folder} (read-only); give olvf write access to the bundle folder "
            "(in Docker: mount it without :ro)"
        )


def update_manifest(bundle_dir: str | Path, change: Callable[[Manifest], Manifest], what: str) -> Manifest:
    """Apply ``change`` to the bundle's current manifest under the lock and write the result atomically."""
    folder = Path(bundle_dir)
    open_bundle(folder, verify=False)  # a folder that is no bundle gets its own message first
    with bundle_lock(folder):
        current = open_bundle(folder, verify=False).manifest
        check_writable(folder, what)
        new = change(current)
        new.validate()
        try:
            write_text_atomic(folder / MANIFEST_NAME, new.to_json(), force=True)
        except OSError as exc:
            raise BundleError(f"cannot write {folder / MANIFEST_NAME} ({exc.strerror or exc})") from None
    return new
