"""Measure olvf-serve's time to result: from the last byte of an image received to its SR stored at the PACS.

    python tests/runtime/node/measure_time_to_result.py --bundle engines/demo [--size 2500x2000] [--singles 10]
                                                         [--burst 20] [--batch N] [--out time_to_result.json]

Starts a real Orthanc (Debian ``orthanc``) and ``olvf-serve`` on loopback ports, as the acceptance tests do,
then sends with dcmtk's ``storescu``: ``--singles`` studies one at a time (each waits for the previous result),
then a burst of ``--burst`` studies from four senders at once. The figures come from the node's own ledger
(``time_to_result_s`` = SR stored at the PACS minus the C-STORE handler's receipt of the image). Not a test:
it takes minutes with a full-size bundle. The studies are one phantom (seed 11, a fresh L2 fracture) under
different UIDs and patients.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from node_peers import Pacs, Serve, phantom_template, storescu, storescu_async, wait_until, write_studies  # noqa: E402


def figures(records: list[dict], keys: set[str]) -> dict[str, float]:
    chosen = [r for r in records if r["key"] in keys and r.get("state") == "sent"]
    total = np.array([r["time_to_result_s"] for r in chosen])
    screened = np.array([r["screened_at"] - r["received_at"] for r in chosen])
    return {
        "studies": len(chosen),
        "p50_s": round(float(np.percentile(total, 50)), 2),
        "p95_s": round(float(np.percentile(total, 95)), 2),
        "max_s": round(float(total.max()), 2),
        "receipt_to_screened_p50_s": round(float(np.percentile(screened, 50)), 2),
        "batches": sorted({int(r["batch"]) for r in chosen}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--size", default="2500x2000", help="rows x columns of the phantom")
    parser.add_argument("--singles", type=int, default=10)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--batch", type=int, default=None, help="default: the node's own (auto)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows, columns = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="olvf-ttr-") as folder:
        root = Path(folder)
        template = phantom_template((rows, columns))
        singles = write_studies(root / "singles", args.singles, template, tag="single")
        burst = write_studies(root / "burst", args.burst, template, tag="burst")
        pacs = Pacs(root / "pacs")
        pacs.start()
        node = Serve(
            root / "node",
            args.bundle.resolve(),
            pacs.destination,
            extra=[] if args.batch is None else ["--batch", str(args.batch)],
        )
        try:
            node.start(timeout=300)
            storescu(node.port, [singles[0].path])  # warm-up: first-call costs of the runtime, not counted
            wait_until(lambda: node.states()["sent"] == 1, 300, "the warm-up result")
            warm = {r["key"] for r in node.records()}
            for i, study in enumerate(singles[1:], start=2):
                storescu(node.port, [study.path])
                wait_until(lambda i=i: node.states()["sent"] == i, 300, "a single result")
            single_keys = {r["key"] for r in node.records()} - warm
            load_before = os.getloadavg()
            started = time.monotonic()
            senders = [storescu_async(node.port, [s.path for s in burst[i::4]]) for i in range(4)]
            for sender in senders:
                sender.communicate(timeout=600)
            total = args.singles + args.burst
            wait_until(lambda: node.states()["sent"] == total, 1200, "the burst's results", every=0.5)
            burst_wall = time.monotonic() - started
            records = node.records()
            burst_keys = {r["key"] for r in records} - single_keys - warm
            result = {
                "bundle": str(args.bundle),
                "image": f"{rows}x{columns}",
                "batch": args.batch or "auto",
                "cpu": os.cpu_count(),
                "load_average_before_burst": [round(v, 2) for v in load_before],
                "singles": figures(records, single_keys),
                "burst": {**figures(records, burst_keys), "wall_s": round(burst_wall, 2)},
            }
        finally:
            node.terminate()
            pacs.stop()
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
