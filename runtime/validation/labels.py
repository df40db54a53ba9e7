"""Labelled sets: the truth a hospital (or ``olvf-phantom --set``) writes beside its radiographs.

Format
    One CSV file, UTF-8 (a spreadsheet's byte-order mark is fine), comma-separated, with a header row and **one row
    per labelled vertebra**::

        file,level,class,x1,y1,x2,y2
        studies/0001.dcm,L1,normal,812,1040,1105,1290
        studies/0001.dcm,L2,fresh,,,,
        studies/0002.png,T12,old,790,602,1061,850

    - ``file``: the radiograph, a DICOM file or a PNG (what the content is decides, not the name), relative to the
      CSV's folder (an absolute path also works, but then the set cannot move). One file is one study; its rows may
      come in any order and need not be adjacent.
    - ``level``: ``T12``, ``L1``, ``L2``, ``L3``, ``L4`` or ``L5`` (case does not matter). A file has each level at
      most once. Levels that are not labelled are simply not scored: label what you know.
    - ``class``: ``normal``, ``old`` (healed) or ``fresh`` (case does not matter).
    - ``x1,y1,x2,y2`` (optional columns): the vertebral body's box in the original image's pixels, ``x1,y1`` its top
      left corner and ``x2,y2`` its bottom right corner (pixel edges, so ``x2 - x1`` is the width, as ``olvf-phantom``
      and the detector report them). In a row they are all four given or all four empty. With a box, the predicted
      vertebra is matched to the labelled one by box overlap (IoU >= 0.5) and detection is scored (mAP); without,
      by level name. Boxes are not checked against the image's size here (that would mean reading every image).
    - Other columns (notes, deformity, reader) are allowed and ignored. Blank lines are skipped.

    Rows are numbered as a spreadsheet shows them: the header is row 1. Every problem is one line naming the file
    and row, e.g. ``labels.csv row 14: class 'frsh' is not one of normal, old, fresh``
    (:class:`olvf.errors.InputError`).

Reading gives frozen dataclasses: :class:`LabelledSet` -> :class:`LabelledStudy` (one per file, in order of first
appearance) -> :class:`LabelledVertebra` (in level order T12..L5). A study's ``key`` is its file as written,
normalised (``./a.dcm`` and ``a.dcm`` are the same study); predictions are handed back under that key.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePath

from olvf.errors import InputError
from olvf.vocabulary import BOX_COLUMNS, CLASSES, LABELS_NAME, LEVELS, REQUIRED_COLUMNS

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class LabelledVertebra:
    """One labelled vertebral body. ``row`` is its row in the CSV (header = row 1), for messages."""

    level: str
    label: str
    box: Box | None
    row: int

    @property
    def class_index(self) -> int:
        return CLASSES.index(self.label)


@dataclass(frozen=True)
class LabelledStudy:
    """One radiograph (one file) and its labelled vertebrae, in level order."""

    key: str
    path: Path
    vertebrae: tuple[LabelledVertebra, ...]

    @property
    def has_boxes(self) -> bool:
        """Every labelled vertebra has a box: the study can be scored for detection."""
        return all(v.box is not None for v in self.vertebrae)

    def vertebra(self, level: str) -> LabelledVertebra | None:
        return next((v for v in self.vertebrae if v.level == level), None)


@dataclass(frozen=True)
class LabelledSet:
    """A labelled set read from ``source`` (the CSV)."""

    source: Path
    studies: tuple[LabelledStudy, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.studies)

    @property
    def vertebra_count(self) -> int:
        return sum(len(s.vertebrae) for s in self.studies)

    def study(self, key: str) -> LabelledStudy:
        for s in self.studies:
            if s.key == key:
                return s
        raise KeyError(key)

    def composition(self) -> dict[str, object]:
        """Counts a person checks first: studies, vertebrae per class and per level, boxes."""
        vertebrae = [v for s in self.studies for v in s.vertebrae]
        by_class = Counter(v.label for v in vertebrae)
        by_level = Counter(v.level for v in vertebrae)
        return {
            "studies": len(self.studies),
            "vertebrae": len(vertebrae),
            "classes": {c: by_class.get(c, 0) for c in CLASSES},
            "levels": {lv: by_level.get(lv, 0) for lv in LEVELS},
            "with_box": sum(v.box is not None for v in vertebrae),
            "studies_with_fresh": sum(any(v.label == "fresh" for v in s.vertebrae) for s in self.studies),
        }


def labels_path(path: str | Path) -> Path:
    """The CSV itself, or ``labels.csv`` in a folder."""
    path = Path(path)
    return path / LABELS_NAME if path.is_dir() else path


def study_key(file: str) -> str:
    """How a study is named: its file as written, normalised, with forward slashes."""
    return PurePath(os.path.normpath(file.strip())).as_posix()


def read_labels(path: str | Path) -> LabelledSet:
    """Read a labelled set from a CSV file (or a folder holding ``labels.csv``); InputError names the row."""
    source = labels_path(path)
    if not source.is_file():
        hint = f"no {LABELS_NAME} in that folder" if Path(path).is_dir() else "no such file"
        raise InputError(
            f"{source}: {hint}; a labelled set is a CSV file,level,class[,x1,y1,x2,y2] "
            "(see docs/reference/labelled-set.md)"
        )
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as CSV UTF-8") from exc
    lines = text.splitlines(keepends=True)
    reader = csv.reader(lines)
    header = _header(source, next(reader, None))
    folder = source.parent
    per_file: dict[str, list[LabelledVertebra]] = {}
    paths: dict[str, Path] = {}
    seen: dict[tuple[str, str], int] = {}
    for cells in reader:
        row = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        where = f"{source} row {row}"
        if len(cells) > len(header):
            raise InputError(f"{where}: {len(cells)} cells but the header has {len(header)} columns")
        record = dict(zip(header, [c.strip() for c in cells]))
        file = record.get("file", "")
        if not file:
            raise InputError(f"{where}: the file cell is empty")
        key = study_key(file)
        level = _level(where, record.get("level", ""))
        label = _class(where, record.get("class", ""))
        box = _box(where, [record.get(c, "") for c in BOX_COLUMNS]) if BOX_COLUMNS[0] in header else None
        if (key, level) in seen:
            raise InputError(f"{where}: {file} has {level} twice (also row {seen[key, level]}); keep one row per level")
        if key not in paths:
            image = Path(file) if Path(file).is_absolute() else folder / file
            if not image.is_file():
                what = "is a folder, not an image" if image.is_dir() else "does not exist"
                raise InputError(f"{where}: image {file} {what} (paths are relative to the CSV's folder {folder})")
            paths[key] = image
        seen[key, level] = row
        per_file.setdefault(key, []).append(LabelledVertebra(level, label, box, row))
    if not per_file:
        raise InputError(f"{source}: no labelled vertebrae (only a header); add one row per vertebra")
    studies = tuple(
        LabelledStudy(key, paths[key], tuple(sorted(rows, key=lambda v: LEVELS.index(v.level))))
        for key, rows in per_file.items()
    )
    return LabelledSet(source, studies)


def _header(source: Path, cells: list[str] | None) -> tuple[str, ...]:
    if cells is None:
        raise InputError(f"{source}: the file is empty; expected a header file,level,class[,x1,y1,x2,y2]")
    header = tuple(c.strip().lower() for c in cells)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        hint = " (it looks semicolon-separated; save it comma-separated)" if ";" in ",".join(cells) else ""
        raise InputError(
            f"{source} row 1: the header lacks {', '.join(missing)}{hint}; expected file,level,class[,x1,y1,x2,y2]"
        )
    duplicated = sorted(c for c, n in Counter(header).items() if n > 1 and c)
    if duplicated:
        raise InputError(f"{source} row 1: column {', '.join(duplicated)} appears twice in the header")
    boxes = [c for c in BOX_COLUMNS if c in header]
    if boxes and len(boxes) != len(BOX_COLUMNS):
        absent = [c for c in BOX_COLUMNS if c not in header]
        raise InputError(f"{source} row 1: box columns need all of x1,y1,x2,y2; {', '.join(absent)} missing")
    return header


def _level(where: str, text: str) -> str:
    level = text.upper()
    if level not in LEVELS:
        raise InputError(f"{where}: level {text!r} is not one of {', '.join(LEVELS)}")
    return level


def _class(where: str, text: str) -> str:
    label = text.lower()
    if label not in CLASSES:
        raise InputError(f"{where}: class {text!r} is not one of {', '.join(CLASSES)}")
    return label


def _box(where: str, cells: list[str]) -> Box | None:
    given = [c for c in cells if c]
    if not given:
        return None
    if len(given) != len(cells):
        raise InputError(f"{where}: box x1,y1,x2,y2 is partly empty; give all four numbers or none")
    values = []
    for name, cell in zip(BOX_COLUMNS, cells):
        try:
            value = float(cell)
        except ValueError:
            raise InputError(f"{where}: box {name} {cell!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise InputError(f"{where}: box {name} {cell!r} must be a finite number >= 0 (pixels)")
        values.append(value)
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise InputError(
            f"{where}: box {x1:g},{y1:g},{x2:g},{y2:g} is empty or reversed; x1,y1 is the top left corner and x2,y2 "
            "the bottom right (x2 > x1, y2 > y1)"
        )
    return x1, y1, x2, y2
