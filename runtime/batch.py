"""From command-line arguments to a list of radiograph files, an output folder name for each, and a progress line.

Arguments are taken in order; each is

- an existing file: used as given, whatever its name (the reader decides by content);
- an existing folder: searched recursively for ``*.dcm``/``*.dicom``, PNG, JPEG
  and TIFF files and for files of any other name that start like DICOM
  (``DICM`` at byte 128; PACS exports often have no extension). Hidden files
  and folders, ``DICOMDIR`` and the output folder itself are skipped, so that
  ``olvf-infer .`` does not read its own overlays back;
- anything else containing ``*``, ``?`` or ``[``: a glob (``**`` recurses),
  for shells that do not expand it;
- else a missing file, reported by the reader.

A file reached twice is analysed once.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from olvf.errors import InputError

DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_GLOB_CHARS = frozenset("*?[")
T = TypeVar("T")


@dataclass(frozen=True)
class Expanded:
    """One argument's contribution: files found, or why there are none."""

    argument: str
    files: tuple[Path, ...]
    error: InputError | None = None


def _looks_like_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            return stream.read(132)[128:132] == b"DICM"
    except OSError:
        return True  # unreadable: keep it, so that the reader says why instead of it vanishing


def _wanted(path: Path) -> bool:
    if path.name.startswith(".") or path.name.upper() == "DICOMDIR":
        return False
    suffix = path.suffix.lower()
    return suffix in DICOM_SUFFIXES or suffix in IMAGE_SUFFIXES or _looks_like_dicom(path)


def folder_files(folder: Path, exclude: Sequence[Path] = ()) -> list[Path]:
    """Radiograph files under ``folder``, sorted, outside hidden folders and ``exclude``."""
    skipped = {os.path.realpath(p) for p in exclude}
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and os.path.realpath(Path(root, d)) not in skipped)
        found.extend(path for name in sorted(files) if _wanted(path := Path(root, name)))
    return found


def expand_argument(argument: str, exclude: Sequence[Path] = ()) -> Expanded:
    path = Path(argument)
    if path.is_dir():
        files = folder_files(path, exclude)
        if not files:
            return Expanded(
                argument,
                (),
                InputError(f"{argument}: folder holds no DICOM, PNG, JPEG or TIFF file; check the folder"),
            )
        return Expanded(argument, tuple(files))
    if path.exists() or not _GLOB_CHARS & set(argument):
        return Expanded(argument, (path,))
    files = []
    for match in sorted(glob.glob(argument, recursive=True)):
        found = Path(match)
        files.extend(folder_files(found, exclude) if found.is_dir() else [found] if found.is_file() else [])
    if not files:
        return Expanded(argument, (), InputError(f"{argument}: no file matches this pattern; check the pattern"))
    return Expanded(argument, tuple(files))


def expand_inputs(arguments: Sequence[str], exclude: Sequence[Path] = ()) -> list[Path | InputError]:
    """Files to analyse in argument order, duplicates dropped; an InputError where an argument gave none."""
    seen: set[str] = set()
    items: list[Path | InputError] = []
    for argument in arguments:
        expanded = expand_argument(argument, exclude)
        if expanded.error is not None:
            items.append(expanded.error)
        for path in expanded.files:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                items.append(path)
    return items


def study_name(path: Path) -> str:
    """The output folder name of one input: its name less a known extension (UID-like names keep their dots)."""
    name = path.name
    if path.suffix.lower() in DICOM_SUFFIXES + IMAGE_SUFFIXES:
        name = name[: -len(path.suffix)]
    return name.lstrip(".") or "input"


def study_names(paths: Sequence[Path]) -> list[str]:
    """Unique folder names in input order: a repeated name gets -2, -3, ... (case-insensitively, for macOS)."""
    taken: set[str] = set()
    names = []
    for path in paths:
        base = study_name(path)
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name.lower())
        names.append(name)
    return names


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Progress:
    """``olvf-infer: 12/40 studies`` rewritten in place on stderr; silent unless stderr is a terminal.

    Messages (errors) printed through :meth:`say` clear the line first, so the
    counter never ends up in the middle of one.
    """

    def __init__(self, total: int, stream: TextIO | None = None, *, minimum: int = 4) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = total >= minimum and self.stream.isatty()
        self.done = 0
        self._said: set[str] = set()

    def say_once(self, line: str) -> None:
        """:meth:`say`, unless this very line was said before (a note that holds for the whole run)."""
        if line not in self._said:
            self.say(line)

    def advance(self, count: int = 1) -> None:
        self.done += count
        self._draw()

    def say(self, line: str) -> None:
        self._said.add(line)
        if self.enabled:
            self.stream.write("\r\033[K")
        print(line, file=self.stream)
        self._draw()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _draw(self) -> None:
        if self.enabled:
            self.stream.write(f"\rolvf-infer: {self.done}/{self.total} studies")
            self.stream.flush()
