"""Write outputs all at once or not at all, and never over the user's files by surprise.

Files go through a temporary file renamed over the target. Folders (a study's
results, a bundle, a validation report) are built in a *staging folder*
beside the target and put in place by one rename, under the lock of the
folder that holds them (:func:`folder_lock`), so that two processes writing
into the same place take turns for the instant it takes, and the second one
sees what the first one left.

Replacing an existing folder (``force``) is crash-safe:

- on Linux the staging folder and the target are swapped in one atomic
  ``renameat2(RENAME_EXCHANGE)``: at every instant the target holds either
  the old results or the new ones, whole; the old ones, now in the staging
  folder's place, are removed after;
- elsewhere (or on a file system without it) the target is moved aside to a
  ``.old`` folder and the staging folder renamed into place with SIGINT and
  SIGTERM held back between the two renames; a SIGKILL or power cut in
  between leaves the ``.old`` folder, which :func:`clean_stale` puts back.

Each staging folder has a lock file beside it (``.NAME.TOKEN.lock``,
``flock``-ed by the process building it and removed with it; not the folder
itself, which the work inside may lock, as an engine build locks a bundle).
A staging or ``.old`` folder whose lock nobody holds was left by a process
that died (SIGKILL, a crash, a power cut): :func:`clean_stale`, run before
every commit in the same folder, removes it, or restores a ``.old`` folder
whose target is missing. Locks are released by the kernel when a process
dies, so this works across processes and containers sharing a volume,
where process ids would not.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from olvf.errors import OutputExistsError

STAGING_SUFFIX = ".partial"
RETIRED_SUFFIX = ".old"
LOCK_SUFFIX = ".lock"
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from their other readers
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, *, force: bool = False) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), force=force)


def check_replaceable(target: Path, *, force: bool = False) -> None:
    """Refuse early, before any slow work, to replace a folder that holds something."""
    if target.exists() and not target.is_dir():
        raise OutputExistsError(f"{target} exists and is not a folder; choose another --out")
    if target.exists() and any(target.iterdir()) and not force:
        raise OutputExistsError(f"{target} already exists and is not empty; pass --force to replace it")


# --- locks ----------------------------------------------------------------------


def _try_flock(fd: int, *, block: bool) -> bool:
    """Take an exclusive lock on ``fd``; False when another process holds it (only without ``block``)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locks; each rename stays atomic on its own
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):  # a file system without locks
            return True
        raise
    return True


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` (on the folder itself: no lock file is left in it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # cannot be opened for the lock: what follows says what is wrong with the folder
        yield
        return
    try:
        _try_flock(fd, block=True)
        yield
    finally:
        os.close(fd)  # releases the lock


# --- staging folders ------------------------------------------------------------------


def _lock_path(parent: Path, name: str, token: str) -> Path:
    return Path(parent) / f".{name}.{token}{LOCK_SUFFIX}"


class Staging:
    """A new, empty folder beside ``target``, owned by this process (its lock file held) until :meth:`close`."""

    def __init__(self, target: Path) -> None:
        self.target = Path(target)
        token = f"olvf{os.getpid()}-{secrets.token_hex(4)}"
        self.path = self.target.parent / f".{self.target.name}.{token}{STAGING_SUFFIX}"
        self.retired = self.target.parent / f".{self.target.name}.{token}{RETIRED_SUFFIX}"
        self.lock = _lock_path(self.target.parent, self.target.name, token)
        # The lock first: a staging folder without a held lock is a dead process's.
        self._fd: int | None = os.open(self.lock, os.O_CREAT | os.O_RDWR, 0o600)
        _try_flock(self._fd, block=True)
        try:
            os.mkdir(self.path, 0o777 & ~_umask())  # mkdtemp's 0700 would hide results from their other readers
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Give up ownership: the lock file goes (before the lock, so nobody takes a lock on a file going away)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.lock)
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.close()


@functools.cache
def _renameat2() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).renameat2
    except (OSError, AttributeError):  # an old C library
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    status = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)  # type: ignore[operator]
    if status == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # kernel or file system without it
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is over (main thread on POSIX; elsewhere nothing to hold)."""
    held = {signal.SIGINT, getattr(signal, "SIGTERM", signal.SIGINT)}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def commit(staging: Staging, target: Path, *, replace: bool) -> None:
    """Put the staging folder in ``target``'s place; call under :func:`folder_lock` of ``target.parent``.

    An existing target is replaced only with ``replace``, crash-safely (module docstring).
    """
    target = Path(target)
    if not os.path.lexists(target):
        os.rename(staging.path, target)
        staging.close()
        return
    if not replace:
        raise OutputExistsError(f"{target} already exists; pass --force to replace it")
    if not target.is_dir() or target.is_symlink():
        raise OutputExistsError(f"{target} exists and is not a folder; choose another --out")
    if _exchange(staging.path, target):
        shutil.rmtree(staging.path, ignore_errors=True)  # the old results, now in the staging folder's place
        staging.close()
        return
    with _signals_held():
        os.rename(target, staging.retired)
        try:
            os.rename(staging.path, target)
        except OSError:
            os.rename(staging.retired, target)  # the old results back where they were, not left hidden
            raise
    shutil.rmtree(staging.retired, ignore_errors=True)
    staging.close()


def sync_folder(folder: Path) -> None:
    """Make ``folder``'s entries durable (after files were written or renamed in it); best effort where the
    file system cannot sync a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _owner_gone(lock: Path) -> bool:
    """Whether nobody holds the lock file any more (its process died, or it is gone); False when unknown."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return True  # the owner never got as far, or finished: nobody owns what is left
    except OSError:
        return False
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (ImportError, OSError):
        return False
    finally:
        os.close(fd)
    return True


def clean_stale(parent: Path, name: str | None = None) -> list[Path]:
    """Remove staging folders that their dead owners left in ``parent`` (only ``name``'s, if given).

    A ``.old`` folder whose target is missing holds the only copy of the
    results it was moved aside with: it is renamed back instead. Returns what
    was removed or restored. Call under :func:`folder_lock` of ``parent``.
    """
    cleaned: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return cleaned
    for entry in sorted(entries, key=lambda e: not e.name.endswith(RETIRED_SUFFIX)):  # restore before removing
        # Lock files go with their folders; one alone (its owner died before making the folder) is left:
        # it is empty, and removing it could race with an owner about to lock it.
        suffix = next((s for s in (STAGING_SUFFIX, RETIRED_SUFFIX) if entry.name.endswith(s)), None)
        if suffix is None or not entry.name.startswith("."):
            continue
        stem = entry.name[1 : -len(suffix)]
        target_name, _, token = stem.rpartition(".")
        if not token.startswith("olvf") or (name is not None and target_name != name):
            continue
        path, lock = Path(entry.path), _lock_path(Path(parent), target_name, token)
        if not entry.is_dir(follow_symlinks=False) or not _owner_gone(lock):
            continue
        target = Path(parent) / target_name
        if suffix == RETIRED_SUFFIX and not os.path.lexists(target):
            os.rename(path, target)
        else:
            shutil.rmtree(path, ignore_errors=True)
        cleaned.append(path)
        with contextlib.suppress(OSError):
            if not any(
                os.path.lexists(Path(parent) / f".{target_name}.{token}{s}") for s in (STAGING_SUFFIX, RETIRED_SUFFIX)
            ):
                os.unlink(lock)
    return cleaned


@contextmanager
def staged_directory(target: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder that replaces ``target`` only if the block succeeds.

    The staging folder sits beside ``target`` so the final rename stays on one
    file system. On any error it is removed and ``target`` is left as it was.
    An existing, non-empty target is replaced only with ``force``; the check is
    made before the block and again, under the lock, when the result is put in place.
    """
    target = Path(target)
    check_replaceable(target, force=force)
    target.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(target.parent):
        clean_stale(target.parent, target.name)
    staging = Staging(target)
    try:
        yield staging.path
    except BaseException:
        staging.discard()
        raise
    try:
        with folder_lock(target.parent):
            check_replaceable(target, force=force)  # someone may have written it meanwhile
            commit(staging, target, replace=True)
    except BaseException:
        staging.discard()
        raise


__all__ = [
    "Staging",
    "check_replaceable",
    "clean_stale",
    "commit",
    "folder_lock",
    "staged_directory",
    "write_bytes_atomic",
    "write_text_atomic",
]
