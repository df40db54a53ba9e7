"""The one way every olvf command ends: a result, or one line on stderr and a documented exit code.

User errors (:class:`olvf.errors.OlvfError`) print ``PROG: error: message``
and return their exit code; a missing optional package says what to install;
Ctrl-C returns 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from olvf.errors import BackendError, OlvfError


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
        return run(args)
    except OlvfError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:
        if install_hint is None:
            raise
        print(f"{prog}: error: {exc.name or exc} is not installed; {install_hint}", file=sys.stderr)
        return BackendError.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing was half-written", file=sys.stderr)
        return 130
