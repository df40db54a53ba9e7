"""``olvf-bench``: latency of the fused ensemble on a bundle (the full benchmark grows in its own issue)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from olvf.errors import OlvfError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="olvf-bench", description="Time the fused ensemble on random crops.")
    parser.add_argument("--bundle", type=Path, default=Path("engines"))
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default=None)
    parser.add_argument("--crops", type=int, default=5, help="crops per call, as in one study (default 5)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    return parser


def run(args: argparse.Namespace) -> int:
    import olvf

    if args.runs < 1 or args.crops < 1:
        raise OlvfError("--runs and --crops must be at least 1")
    started = time.perf_counter()
    with olvf.load(args.bundle, backend=args.backend, precision=args.precision) as rt:
        shape = (args.crops, *rt.preprocess.input_shape)
        batch = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        rt.classify(batch)
        cold_ms = (time.perf_counter() - started) * 1e3
        for _ in range(args.warmup):
            rt.classify(batch)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            rt.classify(batch)
            times.append((time.perf_counter() - t0) * 1e3)
        figures = {
            "backend": rt.backend,
            "precision": rt.precision,
            "crops": args.crops,
            "runs": args.runs,
            "cold_start_ms": round(cold_ms, 1),
            "p50_ms": round(float(np.percentile(times, 50)), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1),
        }
    print(json.dumps(figures, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except OlvfError as exc:
        print(f"olvf-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
