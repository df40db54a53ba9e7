"""A whole labelled set of phantom radiographs, in the labelled-set format hospitals write.

``write_phantom_set(folder, count, seed)`` draws ``count`` phantoms with the phantom seeds ``seed, seed + 1, ...,
seed + count - 1`` (so a training run that must not see them avoids exactly that range) and writes, atomically (a
staging folder renamed into place):

- ``phantom-<seed>.dcm`` and ``phantom-<seed>.json`` (the DICOM and its full truth, as ``olvf-phantom`` writes them);
- ``labels.csv``: one row per level T12-L5 of every study, ``file,level,class,x1,y1,x2,y2`` with the truth boxes
  (:mod:`olvf.runtime.validation.labels` reads it, as it reads a hospital's);
- ``set.json``: how the set was made and its composition.

Composition: each study is a function of its phantom seed ``s`` alone, so the same seed gives the same file in
whichever set it falls (a set of 100 extends the set of 50 from the same ``--seed``). It has 0, 1, 2 or 3 fractured
levels (probabilities 0.2, 0.4, 0.3, 0.1) at distinct levels drawn uniformly, each old or fresh with equal odds and a
wedge, biconcave or crush deformity with equal odds (a balanced mix to validate on, not the clinical prevalence). It is
stored MONOCHROME1 when ``s % 10`` is 1 or 6 and JPEG 2000 lossless when it is 3 or 6: per ten consecutive seeds two
of each, one both.
"""

from __future__ import annotations

import csv
import io
import sys
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import olvf.json_text as json_text
from olvf.atomic import check_replaceable, staged_directory, write_text_atomic
from olvf.errors import InputError
from olvf.phantom import DEFORMITIES, FRACTURE_CLASSES, LEVELS, make_phantom, write_dicom, write_truth
from olvf.vocabulary import BOX_COLUMNS, CLASSES, LABELS_NAME, REQUIRED_COLUMNS

FRACTURES_PER_STUDY_P = (0.2, 0.4, 0.3, 0.1)  # 0, 1, 2 or 3 fractured levels: enough fresh ones for narrow intervals
MONOCHROME1_DIGITS = (1, 6)  # last digit of the phantom seed
JPEG2000_DIGITS = (3, 6)
SET_NAME = "set.json"
MAX_COUNT = 100_000


@dataclass(frozen=True)
class SetStudy:
    """One planned study of a phantom set."""

    seed: int
    fractures: tuple[tuple[str, str], ...]  # (level, class), level order
    deformities: tuple[tuple[str, str], ...]  # (level, deformity)
    monochrome1: bool
    jpeg2000: bool

    @property
    def name(self) -> str:
        return f"phantom-{self.seed}"

    @property
    def photometric(self) -> str:
        return "MONOCHROME1" if self.monochrome1 else "MONOCHROME2"

    @property
    def transfer_syntax(self) -> str:
        return "JPEG 2000 Lossless" if self.jpeg2000 else "Explicit VR Little Endian"


def plan_study(seed: int) -> SetStudy:
    """One study of a set, from its phantom seed alone (see the module docstring)."""
    rng = np.random.default_rng([seed, zlib.crc32(b"olvf-phantom-set")])
    n = int(rng.choice(len(FRACTURES_PER_STUDY_P), p=FRACTURES_PER_STUDY_P))
    levels = sorted(rng.choice(len(LEVELS), size=n, replace=False).tolist())
    classes = [FRACTURE_CLASSES[int(rng.integers(len(FRACTURE_CLASSES)))] for _ in levels]
    kinds = [DEFORMITIES[int(rng.integers(len(DEFORMITIES)))] for _ in levels]
    return SetStudy(
        seed=seed,
        fractures=tuple((LEVELS[k], c) for k, c in zip(levels, classes)),
        deformities=tuple((LEVELS[k], d) for k, d in zip(levels, kinds)),
        monochrome1=seed % 10 in MONOCHROME1_DIGITS,
        jpeg2000=seed % 10 in JPEG2000_DIGITS,
    )


def plan_set(count: int, seed: int) -> tuple[SetStudy, ...]:
    """The studies of a set: phantom seeds ``seed .. seed + count - 1``, each planned by :func:`plan_study`."""
    if not 1 <= count <= MAX_COUNT:
        raise InputError(f"--count must be 1..{MAX_COUNT}, not {count}")
    if seed < 0:
        raise InputError(f"--seed must be a non-negative integer, not {seed}")
    return tuple(plan_study(seed + i) for i in range(count))


def composition(studies: tuple[SetStudy, ...]) -> dict[str, Any]:
    """Counts of the planned set (what ``set.json`` records and the command prints)."""
    classes = Counter({c: 0 for c in CLASSES})
    deformities = Counter({d: 0 for d in DEFORMITIES})
    for s in studies:
        fractured = dict(s.fractures)
        for level in LEVELS:
            classes[fractured.get(level, "normal")] += 1
        deformities.update(d for _, d in s.deformities)
    return {
        "studies": len(studies),
        "vertebrae": len(studies) * len(LEVELS),
        "classes": dict(classes),
        "deformities": dict(deformities),
        "studies_with_fresh": sum(any(c == "fresh" for _, c in s.fractures) for s in studies),
        "monochrome1": sum(s.monochrome1 for s in studies),
        "jpeg2000": sum(s.jpeg2000 for s in studies),
    }


def describe(folder: Path, studies: tuple[SetStudy, ...]) -> str:
    comp = composition(studies)
    c, d = comp["classes"], comp["deformities"]
    first, last = studies[0].seed, studies[-1].seed
    return (
        f"wrote {folder}: {comp['studies']} studies (phantom seeds {first}-{last}), {comp['vertebrae']} vertebrae: "
        f"{c['normal']} normal, {c['old']} old, {c['fresh']} fresh ({', '.join(f'{n} {k}' for k, n in d.items())}); "
        f"{comp['studies_with_fresh']} studies with a fresh fracture; {comp['monochrome1']} MONOCHROME1, "
        f"{comp['jpeg2000']} JPEG 2000 lossless; labels in {folder / LABELS_NAME}"
    )


def write_phantom_set(
    folder: str | Path,
    count: int,
    seed: int,
    *,
    size: tuple[int, int] = (2500, 2000),
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[SetStudy, ...]:
    """Draw and write the set (see the module docstring); returns its plan. ``progress(done, total)`` per study."""
    folder = Path(folder)
    studies = plan_set(count, seed)
    check_replaceable(folder, force=force)  # before minutes of drawing
    header = [*REQUIRED_COLUMNS, *BOX_COLUMNS]
    rows: list[list[Any]] = []
    records = []
    with staged_directory(folder, force=force) as staging:
        for done, study in enumerate(studies, 1):
            fractures, deformities = dict(study.fractures), dict(study.deformities)
            phantom = make_phantom(study.seed, fractures, size, deformities=deformities)
            dicom = f"{study.name}.dcm"
            write_dicom(phantom, staging / dicom, monochrome1=study.monochrome1, jpeg2000=study.jpeg2000)
            write_truth(
                phantom,
                staging / f"{study.name}.json",
                dicom=dicom,
                photometric_interpretation=study.photometric,
                transfer_syntax=study.transfer_syntax,
            )
            for v in phantom.levels:
                rows.append([dicom, v.level, v.label, *v.box])
            records.append(
                {
                    "file": dicom,
                    "seed": study.seed,
                    "fractures": [{"level": lv, "class": c, "deformity": deformities[lv]} for lv, c in study.fractures],
                    "photometric_interpretation": study.photometric,
                    "transfer_syntax": study.transfer_syntax,
                }
            )
            if progress is not None:
                progress(done, len(studies))
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        write_text_atomic(staging / LABELS_NAME, text.getvalue())
        description = {
            "generator": "olvf-phantom --set",
            "synthetic": True,
            "seed": seed,
            "count": count,
            "phantom_seeds": {"first": studies[0].seed, "last": studies[-1].seed},
            "size": {"rows": size[0], "columns": size[1]},
            "design": {
                "fractures_per_study_p": dict(zip(("0", "1", "2", "3"), FRACTURES_PER_STUDY_P)),
                "class": "old or fresh, equal odds",
                "deformity": "wedge, biconcave or crush, equal odds",
                "variants": "MONOCHROME1 when seed % 10 is 1 or 6, JPEG 2000 lossless when it is 3 or 6",
                "each study": "a function of its phantom seed alone",
            },
            "composition": composition(studies),
            "labels": LABELS_NAME,
            "box_format": "x1,y1,x2,y2 original pixels, x2,y2 exclusive; vertebral body only",
            "studies": records,
        }
        write_text_atomic(staging / SET_NAME, json_text.dumps(description, indent=2) + "\n")
    return studies


def print_progress(done: int, total: int) -> None:
    """A counter on stderr, only for a person watching a terminal."""
    if sys.stderr.isatty():
        print(f"\r{done}/{total} phantoms", end="\n" if done == total else "", file=sys.stderr, flush=True)
