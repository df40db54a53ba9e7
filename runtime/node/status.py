"""``olvf-serve status``: what a node's spool says, for the operator (no patient data: keys, states, timings).

Read from the spool only, so it works whether the node runs or not, and
from another account with read access to the spool.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from olvf.runtime.node.spool import FAILED, NODE_STATE, RESULT, SEND_STATE, Spool, read_json
from olvf.runtime.node.studylog import short

LATENCY_WINDOW = 200  # the most recent sent studies the time-to-result figures cover


def node_status(spool_root: Path, *, last: int = 10, running: bool | None = None) -> dict[str, Any]:
    spool = Spool(Path(spool_root).resolve())
    records = spool.records()
    node = read_json(Path(spool_root) / NODE_STATE) or {}
    sent = [r for r in records if r.get("state") == "sent" and r.get("time_to_result_s") is not None]
    latencies = np.array([r["time_to_result_s"] for r in sent[-LATENCY_WINDOW:]], np.float64)
    waiting = []
    for entry in spool.outbox_entries():
        send = read_json(entry / SEND_STATE) or {}
        result = read_json(entry / RESULT) or {}
        waiting.append(
            {
                "key": short(entry.name),
                "received_at": result.get("received_at"),
                "failures": send.get("failures", 0),
                "next_attempt_at": send.get("next_at"),
                "last_error": send.get("last_error"),
            }
        )
    counts: dict[str, int] = {}
    for record in records:
        counts[str(record.get("state"))] = counts.get(str(record.get("state")), 0) + 1
    return {
        "spool": str(spool_root),
        "running": running,
        "node": node,
        "queue": spool.queue_lengths(),
        "states": counts,
        "time_to_result_s": {
            "studies": int(latencies.size),
            "p50": round(float(np.percentile(latencies, 50)), 3) if latencies.size else None,
            "p95": round(float(np.percentile(latencies, 95)), 3) if latencies.size else None,
        },
        "waiting_to_send": sorted(waiting, key=lambda w: w.get("received_at") or 0.0),
        "last_studies": [_study(r, spool) for r in records[-last:]][::-1],
        "failed": _failed(spool, last),
        "errors": node.get("errors", [])[-last:][::-1],
    }


def _failed(spool: Spool, last: int) -> list[dict[str, Any]]:
    """The newest instances set aside in failed/: which file, and the one-line reason the node gave."""
    found = []
    if spool.failed.exists():
        for path in spool.failed.glob("*.json"):
            kept = read_json(path) or {}
            found.append(
                {
                    "key": short(path.stem),
                    "file": f"{FAILED}/{path.stem}.dcm",
                    "at": kept.get("at"),
                    # A node before this one named the absolute path: shown relative all the same.
                    "reason": spool.relative(str(kept.get("reason") or "no reason recorded")),
                }
            )
    return sorted(found, key=lambda f: f.get("at") or 0.0, reverse=True)[:last]


def _study(record: dict[str, Any], spool: Spool) -> dict[str, Any]:
    return {
        "key": short(str(record.get("key", ""))),
        "state": record.get("state"),
        "study": record.get("study"),
        "received_at": record.get("received_at"),
        "time_to_screened_s": _delta(record, "screened_at"),
        "time_to_result_s": record.get("time_to_result_s"),
        "attempts": record.get("attempts"),
        "reason": _reason(record.get("reason") or record.get("last_error"), spool),
    }


def _reason(reason: Any, spool: Spool) -> str | None:
    return None if reason is None else spool.relative(str(reason))


def _delta(record: dict[str, Any], key: str) -> float | None:
    if record.get(key) is None or record.get("received_at") is None:
        return None
    return round(float(record[key]) - float(record["received_at"]), 3)


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def status_lines(status: dict[str, Any]) -> list[str]:
    node, queue = status["node"], status["queue"]
    running = {True: "running", False: "not running", None: "unknown"}[status["running"]]
    lines = [f"olvf-serve spool {status['spool']}: node {running}"]
    if node:
        lines.append(
            f"  {node.get('ae_title')} on {node.get('listening')} -> {node.get('destination')}; bundle "
            f"{str(node.get('bundle_sha256', ''))[:8]}{' DEMO' if node.get('demo') else ''} on {node.get('backend')}; "
            f"started {_when(node.get('started_at'))}"
        )
        if node.get("signature"):
            lines.append(f"  {node['signature']['line']}")
        if node.get("destination_down_since"):
            since, reason = _when(node["destination_down_since"]), node.get("destination_down_reason")
            lines.append(f"  destination DOWN since {since}: {reason}")
    lines.append(
        f"queue: {queue['waiting_to_screen']} waiting to screen, {queue['waiting_to_send']} waiting to send, "
        f"{queue['dead_letter']} in dead-letter, {queue['failed']} failed"
    )
    if status["states"]:
        lines.append("studies: " + ", ".join(f"{n} {s}" for s, n in sorted(status["states"].items())))
    ttr = status["time_to_result_s"]
    if ttr["studies"]:
        lines.append(
            f"time to result (receipt to stored at the destination), last {ttr['studies']}: "
            f"p50 {ttr['p50']:.2f} s, p95 {ttr['p95']:.2f} s"
        )
    if status["last_studies"]:
        lines.append("last studies (newest first):")
        lines.append(f"  {'key':16}  {'state':15}  {'received':19}  {'screened':>9}  {'result':>9}  reason")
        for s in status["last_studies"]:
            lines.append(
                f"  {s['key']:16}  {str(s['state']):15}  {_when(s['received_at']):19}  "
                f"{_seconds(s['time_to_screened_s']):>9}  {_seconds(s['time_to_result_s']):>9}  {s['reason'] or ''}"
            )
    if status["failed"]:
        lines.append(f"failed, set aside in {FAILED}/ and never retried (newest first):")
        lines.extend(f"  {f['key']:16}  {_when(f['at']):19}  {f['file']}: {f['reason']}" for f in status["failed"])
    if status["errors"]:
        lines.append("recent errors (newest first):")
        lines.extend(f"  {_when(e.get('at'))}  {e.get('error')}" for e in status["errors"])
    return lines
