"""From command-line arguments to a list of radiograph files, an output folder name for each, and a progress line.

Arguments are taken in order; each is

- an existing file: used as given, whatever its name (the reader decides by content);
- an existing folder: searched recursively for ``*.dcm``/``*.dicom``, PNG, JPEG
  and TIFF files and for files of any other name that start like DICOM
  (``DICM`` at byte 128; PACS exports often have no extension). Hidden files
  and folders, ``DICOMDIR``, the output folder itself and **any olvf results
  folder** (one holding an olvf ``report.json`` or ``validation.json``,
  wherever it is) are skipped, so that olvf never reads its own overlays and
  heatmaps back as radiographs. Named pipes, sockets and devices are never
  opened (a FIFO would block the run): they are listed, and the reader
  refuses each with one line;
- anything else containing ``*``, ``?`` or ``[``: a glob (``**`` recurses),
  for shells that do not expand it;
- else a missing file, reported by the reader.

A file named explicitly (or by a glob) inside an olvf results folder is
refused as olvf's own output.

A file reached twice is analysed once.
"""

from __future__ import annotations

import glob
import os
import re
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from olvf.errors import InputError
from olvf.text import printable

DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_GLOB_CHARS = frozenset("*?[")
RESULT_FILES = ("report.json", "validation.json")  # what olvf writes into every results folder it makes
MAX_NAME = 100  # UTF-8 bytes of a folder name taken from a file name; staging names add about 60 of 255
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")
T = TypeVar("T")


@dataclass(frozen=True)
class Expanded:
    """One argument's contribution: files found, or why there are none."""

    argument: str
    files: tuple[Path, ...]
    error: InputError | None = None


def _looks_like_dicom(path: Path) -> bool:
    try:
        # Non-blocking: only regular files get here, but one may be swapped for a FIFO meanwhile.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return True  # unreadable: keep it, so that the reader says why instead of it vanishing
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return True
        return os.pread(fd, 4, 128) == b"DICM" if hasattr(os, "pread") else os.read(fd, 132)[128:132] == b"DICM"
    except OSError:
        return True
    finally:
        os.close(fd)


def _wanted(path: Path) -> bool:
    if path.name.startswith(".") or path.name.upper() == "DICOMDIR":
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return True  # a dangling link or no permission: the reader says why
    if not stat.S_ISREG(mode):
        return not stat.S_ISDIR(mode)  # a FIFO, socket or device: listed, never opened here, refused by the reader
    suffix = path.suffix.lower()
    return suffix in DICOM_SUFFIXES or suffix in IMAGE_SUFFIXES or _looks_like_dicom(path)


def is_results_folder(folder: Path) -> bool:
    """Whether ``folder`` holds results olvf wrote (a study's report.json, a validation report)."""
    for name in RESULT_FILES:
        try:
            with open(Path(folder, name), encoding="utf-8") as handle:
                head = handle.read(4096)
        except (OSError, UnicodeDecodeError):
            continue
        if re.search(r'"schema"\s*:\s*"olvf-', head):
            return True
    return False


def inside_results_folder(path: Path) -> Path | None:
    """The olvf results folder that holds ``path``, if it is in one."""
    parent = Path(os.path.realpath(path)).parent
    return parent if is_results_folder(parent) else None


def folder_files(folder: Path, exclude: Sequence[Path] = ()) -> list[Path]:
    """Radiograph files under ``folder``, sorted, outside hidden folders, olvf results and ``exclude``."""
    skipped = {os.path.realpath(p) for p in exclude}
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        if is_results_folder(Path(root)):
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and os.path.realpath(Path(root, d)) not in skipped)
        found.extend(path for name in sorted(files) if _wanted(path := Path(root, name)))
    return found


def _olvf_output(path: Path) -> InputError | None:
    folder = inside_results_folder(path)
    if folder is None:
        return None
    return InputError(
        f"{printable(path)}: is olvf's own output (in the results folder {printable(folder)}), not a radiograph; "
        "pass the original image"
    )


def expand_argument(argument: str, exclude: Sequence[Path] = ()) -> Expanded:
    path = Path(argument)
    shown = printable(argument)
    if path.is_dir():
        files = folder_files(path, exclude)
        if not files:
            try:
                children = list(path.iterdir())  # os.walk says nothing of a folder it cannot read
            except OSError as exc:
                reason = f"cannot be read ({exc.strerror or exc}); check its permissions"
                return Expanded(argument, (), InputError(f"{shown}: {reason}"))
            own = (
                is_results_folder(path)
                or os.path.realpath(path) in {os.path.realpath(p) for p in exclude}
                or any(is_results_folder(child) for child in children if child.is_dir())
            )
            what = "holds olvf results, not radiographs" if own else "folder holds no DICOM, PNG, JPEG or TIFF file"
            return Expanded(argument, (), InputError(f"{shown}: {what}; check the folder"))
        return Expanded(argument, tuple(files))
    if os.path.lexists(path) or not _GLOB_CHARS & set(argument):
        output = _olvf_output(path) if os.path.lexists(path) else None
        return Expanded(argument, () if output else (path,), output)
    files = []
    for match in sorted(glob.glob(argument, recursive=True)):
        found = Path(match)
        if found.is_dir():
            files.extend(folder_files(found, exclude))
        elif _wanted(found) and _olvf_output(found) is None:
            files.append(found)
    if not files:
        return Expanded(argument, (), InputError(f"{shown}: no file matches this pattern; check the pattern"))
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
    """The output folder name of one input: its name less a known extension, printable, at most MAX_NAME long.

    Control characters (escape sequences in a hostile file name) become ``_``.
    """
    name = path.name
    if path.suffix.lower() in DICOM_SUFFIXES + IMAGE_SUFFIXES:
        name = name[: -len(path.suffix)]
    name = _UNSAFE_NAME.sub("_", name).lstrip(".") or "input"
    # File systems count bytes: 100 characters of CJK are 300 bytes, over the 255 a name may have.
    return name.encode("utf-8", "surrogateescape")[:MAX_NAME].decode("utf-8", "ignore") or "input"


def study_names(paths: Sequence[Path]) -> list[str]:
    """Unique folder names in input order: a repeated name gets -2, -3, ... (case-insensitively, for macOS).

    The folders actually written are chosen by
    :class:`olvf.runtime.writers.study_folder.OutputFolder`, which also skips
    folders holding other inputs' results from earlier runs.
    """
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
