"""``olvf-bench``: latency benchmark reports, every variant side by side in one run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import olvf.json_text as json_text
from olvf.cli_main import run_main
from olvf.runtime.bundle.manifest import DEFAULT_BUNDLE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="olvf-bench",
        description="Benchmark the cascade on a phantom study: naive research code, PyTorch batched and olvf "
        "on every backend present, against the machine's own FLOP floor.",
    )
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help=f"bundle (default {DEFAULT_BUNDLE})")
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="report folder (default bench-out/)")
    parser.add_argument("--quick", action="store_true", help="few runs: checks that it works, figures not stable")
    parser.add_argument("--variant", action="append", default=[], help="only these variants (repeatable)")
    parser.add_argument("--force", action="store_true", help="replace an existing report folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from olvf.atomic import check_replaceable, staged_directory
    from olvf.bench.report import markdown, plot
    from olvf.bench.run import FULL, QUICK, run_benchmark

    check_replaceable(args.out, force=args.force)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = run_benchmark(args.bundle, QUICK if args.quick else FULL, variants=tuple(args.variant), progress=progress)
    with staged_directory(args.out, force=args.force) as staging:
        (staging / "bench.json").write_text(json_text.dumps(report, indent=2) + "\n", encoding="utf-8")
        (staging / "bench.md").write_text(markdown(report), encoding="utf-8")
        plot(report, staging / "bench.png")
    print(markdown(report))
    print(f"written to {args.out}/bench.json, bench.md and bench.png")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("olvf-bench", build_parser(), run, argv, install_hint="pip install 'olvf[bench]'")


if __name__ == "__main__":
    sys.exit(main())
