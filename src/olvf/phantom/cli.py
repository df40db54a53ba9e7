"""``olvf-phantom``: write a phantom lateral lumbar radiograph (DICOM) and its ground truth (JSON).

    olvf-phantom demo.dcm --seed 3 --fracture L2:fresh --fracture L4:old:crush

writes ``demo.dcm`` and ``demo.json``. Without ``--fracture`` the seed chooses
the fractures (often none); ``--no-fractures`` draws a spine without any.

    olvf-phantom --set held-out/ --count 100 --seed 5000 [--size 1250x1000]

writes a whole labelled set (phantom seeds 5000-5099, a mix of fractures and
file variants chosen from the seed, ``labels.csv`` in the labelled-set format;
:mod:`olvf.phantom.sets`). The drawing itself lives in :mod:`olvf.phantom`;
this module only parses, checks and reports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from olvf.cli_main import run_main
from olvf.errors import InputError, OutputExistsError
from olvf.phantom import DEFORMITIES, FRACTURE_CLASSES, LEVELS, Phantom, make_phantom, write_dicom, write_truth
from olvf.phantom.sets import describe, print_progress, write_phantom_set

PROG = "olvf-phantom"


def _size(text: str) -> tuple[int, int]:
    rows, sep, cols = text.lower().partition("x")
    if not sep or not rows.strip().isdigit() or not cols.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLS such as 2500x2000, not {text!r}")
    return int(rows), int(cols)


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, not {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write a synthetic lateral lumbar radiograph (DICOM, no patient data) and its truth (JSON), "
        "or with --set a whole labelled set.",
    )
    parser.add_argument(
        "out", type=Path, nargs="?", metavar="OUT.dcm", help="DICOM file to write; the truth goes to OUT.json"
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="seed for the anatomy, noise and chosen fractures (default 0); with --set the first phantom's seed",
    )
    parser.add_argument(
        "--set",
        type=Path,
        metavar="DIR",
        dest="set_dir",
        help="write a labelled set into DIR instead: --count phantoms with seeds --seed, --seed + 1, ..., a mix of "
        "normal, old and fresh levels, deformities, MONOCHROME1 and JPEG 2000 files chosen from the seed, "
        "DIR/labels.csv and DIR/set.json",
    )
    parser.add_argument("--count", type=_count, default=None, help="phantoms in a --set (default 100)")
    fractures = parser.add_mutually_exclusive_group()
    fractures.add_argument(
        "--fracture",
        action="append",
        default=None,
        metavar="LEVEL:CLASS[:DEFORMITY]",
        help=f"fracture a level ({', '.join(LEVELS)}) as {' or '.join(FRACTURE_CLASSES)}, optionally "
        f"{', '.join(DEFORMITIES)}; repeatable. Without it the seed chooses.",
    )
    fractures.add_argument("--no-fractures", action="store_true", help="every level normal")
    parser.add_argument("--monochrome1", action="store_true", help="store MONOCHROME1 (inverted values, same display)")
    parser.add_argument("--jpeg2000", action="store_true", help="compress losslessly with JPEG 2000")
    parser.add_argument("--size", type=_size, default=(2500, 2000), metavar="ROWSxCOLS", help="default 2500x2000")
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite OUT.dcm and OUT.json (or replace the --set folder) if they exist",
    )
    return parser


def parse_fractures(specs: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``["L2:fresh", "L4:old:crush"]`` -> classes and deformities by level; InputError on anything else."""
    classes: dict[str, str] = {}
    deformities: dict[str, str] = {}
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise InputError(f"--fracture {spec!r}: expected LEVEL:CLASS or LEVEL:CLASS:DEFORMITY, such as L2:fresh")
        level, label = parts[0], parts[1]
        if level in classes:
            raise InputError(f"--fracture {spec!r}: {level} is given twice")
        if level not in LEVELS:
            raise InputError(f"--fracture {spec!r}: unknown level {level!r}; use one of {', '.join(LEVELS)}")
        if label not in FRACTURE_CLASSES:
            raise InputError(f"--fracture {spec!r}: unknown class {label!r}; use {' or '.join(FRACTURE_CLASSES)}")
        if len(parts) == 3:
            if parts[2] not in DEFORMITIES:
                raise InputError(
                    f"--fracture {spec!r}: unknown deformity {parts[2]!r}; use one of {', '.join(DEFORMITIES)}"
                )
            deformities[level] = parts[2]
        classes[level] = label
    return classes, deformities


def _summary(phantom: Phantom, dicom: Path, truth: Path, photometric: str, syntax: str) -> str:
    rows, cols = phantom.size
    broken = [f"{v.level} {v.label} {v.deformity}" for v in phantom.levels if v.label != "normal"]
    return (
        f"wrote {dicom} and {truth}: seed {phantom.seed}, {rows}x{cols} at {phantom.pixel_spacing_mm:g} mm/px, "
        f"{photometric}, {syntax}; levels {' '.join(v.level for v in phantom.levels)}; "
        f"fractures: {', '.join(broken) if broken else 'none'}"
    )


def run_set(args: argparse.Namespace) -> int:
    if args.out is not None:
        raise InputError(f"give either OUT.dcm ({args.out}) or --set DIR, not both")
    mixed = [
        name
        for name, given in (
            ("--fracture", args.fracture is not None),
            ("--no-fractures", args.no_fractures),
            ("--monochrome1", args.monochrome1),
            ("--jpeg2000", args.jpeg2000),
        )
        if given
    ]
    if mixed:
        raise InputError(
            f"{', '.join(mixed)} cannot be used with --set: a set chooses fractures and file variants per study "
            "from --seed"
        )
    count = 100 if args.count is None else args.count
    studies = write_phantom_set(
        args.set_dir, count, args.seed, size=args.size, force=args.force, progress=print_progress
    )
    print(describe(args.set_dir, studies))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.set_dir is not None:
        return run_set(args)
    if args.out is None:
        raise InputError("give the DICOM file to write (OUT.dcm), or --set DIR for a labelled set")
    if args.count is not None:
        raise InputError("--count is for --set DIR; one OUT.dcm is one phantom")
    dicom: Path = args.out
    truth = dicom.with_suffix(".json")
    if truth == dicom:
        raise InputError(f"{dicom}: name the DICOM file something other than .json (the truth goes to OUT.json)")
    # Refuse before the slow work, and before writing either file.
    for path in (dicom, truth):
        if path.exists() and not args.force:
            raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")
    fractures: dict[str, str] | None
    deformities: dict[str, str] | None
    if args.no_fractures:
        fractures, deformities = {}, {}
    elif args.fracture is None:
        fractures, deformities = None, None
    else:
        fractures, deformities = parse_fractures(args.fracture)
    phantom = make_phantom(args.seed, fractures, args.size, deformities=deformities)
    photometric = "MONOCHROME1" if args.monochrome1 else "MONOCHROME2"
    syntax = "JPEG 2000 Lossless" if args.jpeg2000 else "Explicit VR Little Endian"
    write_dicom(phantom, dicom, monochrome1=args.monochrome1, jpeg2000=args.jpeg2000, force=args.force)
    write_truth(
        phantom,
        truth,
        force=args.force,
        dicom=dicom.name,
        photometric_interpretation=photometric,
        transfer_syntax=syntax,
    )
    print(_summary(phantom, dicom, truth, photometric, syntax))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
