"""One root exception for everything a user can cause and fix.

Each subclass carries the process exit code the CLIs return for it, so the
codes are documented in one place (docs/reference/exit-codes.md) and scripts can tell
a bad input from a bad bundle without parsing messages. Bugs are not
``OlvfError`` and keep their tracebacks.
"""

from __future__ import annotations

from typing import Any


class OlvfError(Exception):
    """A problem the user can fix; the message says what is wrong and how."""

    exit_code: int = 1


class UsageError(OlvfError):
    """A command-line argument is out of range or contradicts another (argparse's own code)."""

    exit_code = 2


class InputError(OlvfError):
    """An input file (image, DICOM, crop batch) cannot be used."""

    exit_code = 3


class BundleError(OlvfError):
    """A model bundle is missing, incomplete, tampered with or stale."""

    exit_code = 4


class CheckpointError(OlvfError):
    """A training checkpoint is not the architecture or form we expect."""

    exit_code = 5


class ParityError(OlvfError):
    """An exported graph does not reproduce its source model within tolerance.

    ``figures`` holds what was measured, so that a refused route is still reported with its numbers.
    """

    exit_code = 6

    def __init__(self, message: str, figures: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.figures: dict[str, Any] = dict(figures or {})


class BackendError(OlvfError):
    """An inference backend is unknown, not installed or cannot start."""

    exit_code = 7


class OutputExistsError(OlvfError):
    """Refusing to overwrite something the user already has."""

    exit_code = 8
