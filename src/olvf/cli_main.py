"""The one way every olvf command ends: a result, or one line on stderr and a documented exit code.

User errors (:class:`olvf.errors.OlvfError`) print ``PROG: error: message``
and return their exit code; a missing optional package says what to install;
Ctrl-C returns 130 and SIGTERM 143 (``docker stop``, a service manager),
both after the staging folders being written are removed, so nothing is
left half-written. SIGTERM gets a handler of its own because Python leaves
it at the default action, which kills the process without any clean-up, and
which the kernel does not even deliver to a PID 1 without a handler (olvf-infer
as a container's entry point). Messages are printed with control characters
escaped (:func:`olvf.text.printable`): they quote file names and header values.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

from olvf.errors import BackendError, OlvfError
from olvf.text import printable

INTERRUPTED = 130  # 128 + SIGINT
TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that every clean-up on the way out runs as for Ctrl-C."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (main thread only, where signals arrive)."""
    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_main(
    prog: str,
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None,
    *,
    install_hint: str | None = None,
) -> int:
    args = parser.parse_args(argv)
    try:
        with sigterm_as_interrupt():
            return run(args)
    except OlvfError as exc:
        print(f"{prog}: error: {printable(exc)}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:
        if install_hint is None:
            raise
        print(f"{prog}: error: {exc.name or exc} is not installed; {install_hint}", file=sys.stderr)
        return BackendError.exit_code
    except Terminated:
        print(f"{prog}: terminated (SIGTERM); nothing was half-written", file=sys.stderr)
        return TERMINATED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing was half-written", file=sys.stderr)
        return INTERRUPTED
