"""``olvf-serve``: the DICOM node for the emergency department, and its operator's view.

    olvf-serve --bundle engines/ --ae-title OLVF --port 11112 --spool /var/spool/olvf \\
               --send-to PACS@10.0.0.5:104 --allow XRAY1@10.0.0.21 [--config olvf-serve.toml]
    olvf-serve status --spool /var/spool/olvf [--json] [--last 10]
    olvf-serve requeue --spool /var/spool/olvf [KEY ...]      # dead-lettered results, sent again

Flags override the config file (TOML, the same names with underscores; see
docs/how-to/serve-systemd.md). This module parses and prints; the node is
:mod:`olvf.runtime.node.server`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import olvf.json_text as json_text
from olvf.cli_main import run_main
from olvf.errors import UsageError

PROG = "olvf-serve"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A DICOM node: receives radiographs by C-STORE, screens the lateral lumbar ones with the "
        "bundle and sends a Secondary Capture and a TID 1500 SR back to the PACS; never loses a study. "
        "'olvf-serve status --spool DIR' shows its queue.",
    )
    parser.add_argument("--config", type=Path, default=None, help="TOML config file; flags override its values")
    parser.add_argument("--bundle", default=None, help="bundle folder (olvf-export)")
    parser.add_argument("--spool", default=None, help="spool folder: received instances and results wait here")
    parser.add_argument("--send-to", dest="send_to", default=None, metavar="AE@HOST:PORT", help="the PACS")
    parser.add_argument("--ae-title", dest="ae_title", default=None, help="this node's AE title (default OLVF)")
    parser.add_argument("--host", default=None, help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=None, help="DICOM port (default 11112)")
    parser.add_argument(
        "--allow",
        action="append",
        default=None,
        metavar="AE[@HOST]",
        help="a calling AE title allowed to send, optionally only from HOST (repeatable)",
    )
    parser.add_argument(
        "--allow-any", dest="allow_any", action="store_true", default=None, help="accept any calling AE title"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="most studies per ensemble call (default: 1 when the ensemble runs on the CPU, 8 on a GPU)",
    )
    parser.add_argument("--backend", default=None, help="inference backend (default auto, as olvf-infer)")
    parser.add_argument("--device", default=None, help="device for the backend (cpu, cuda, tensorrt or a GPU index)")
    parser.add_argument(
        "--triton-url",
        dest="triton_url",
        default=None,
        metavar="HOST:PORT",
        help="with --backend triton: the Triton Inference Server's gRPC address, serving this bundle's repository",
    )
    parser.add_argument(
        "--triton-priority",
        dest="triton_priority",
        choices=("er", "routine"),
        default=None,
        help="with --backend triton: this node's requests' priority on the server (default er, the higher)",
    )
    parser.add_argument(
        "--spool-limit-mb",
        dest="spool_limit_mb",
        type=int,
        default=None,
        help="most MiB the spool may hold (default: the disk's free space); an instance is refused (0xA700) "
        "where it and the results of everything waiting would not fit",
    )
    parser.add_argument(
        "--max-attempts",
        dest="max_attempts",
        type=int,
        default=None,
        help="failed sends before a result goes to dead-letter (default 30)",
    )
    parser.add_argument(
        "--retry-first-s",
        dest="first_delay_s",
        type=float,
        default=None,
        help="wait after the first failed send, doubling after each (default 5)",
    )
    parser.add_argument(
        "--retry-max-s", dest="max_delay_s", type=float, default=None, help="longest wait between sends (default 300)"
    )
    return parser


def build_status_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{PROG} status", description="Show a node's queue, last studies and errors.")
    parser.add_argument("--spool", type=Path, required=True, help="the node's spool folder")
    parser.add_argument("--last", type=int, default=10, help="how many recent studies and errors to show")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    return parser


def build_requeue_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} requeue",
        description="Send dead-lettered results again (after the destination was fixed); a running node picks "
        "them up within a second.",
    )
    parser.add_argument("--spool", type=Path, required=True, help="the node's spool folder")
    parser.add_argument(
        "keys", nargs="*", metavar="KEY", help="keys (or their start, as status shows) to requeue; default all"
    )
    return parser


def merged_settings(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    from olvf.runtime.node.config import read_config_file

    settings: dict[str, Any] = {}
    base = None
    if args.config is not None:
        settings = read_config_file(args.config)
        base = args.config.resolve().parent
    for key in (
        "bundle",
        "spool",
        "send_to",
        "ae_title",
        "host",
        "port",
        "allow",
        "allow_any",
        "batch",
        "backend",
        "device",
        "spool_limit_mb",
        "triton_url",
        "triton_priority",
    ):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    retry = dict(settings.get("retry") or {})
    for key in ("max_attempts", "first_delay_s", "max_delay_s"):
        if getattr(args, key) is not None:
            retry[key] = getattr(args, key)
    settings["retry"] = retry
    # Paths given as flags are read from the working folder, those in the file from the file's folder.
    for key in ("bundle", "spool"):
        if getattr(args, key) is not None:
            settings[key] = str(Path(getattr(args, key)).resolve())
    return settings, base


def _serve(args: argparse.Namespace) -> int:
    from olvf.runtime.node.config import build_config
    from olvf.runtime.node.server import Node
    from olvf.runtime.node.studylog import node_stderr

    settings, base = merged_settings(args)
    config = build_config(settings, base=base)
    with node_stderr():  # a decode points fd 2 elsewhere for a while: the log goes to a copy taken now
        Node(config).serve_forever()
    return 0


def _status(args: argparse.Namespace) -> int:
    from olvf.runtime.node.server import spool_in_use
    from olvf.runtime.node.status import node_status, status_lines

    if not args.spool.is_dir():
        raise UsageError(f"--spool {args.spool}: no such folder; give the spool of a node (its --spool)")
    status = node_status(args.spool, last=args.last, running=spool_in_use(args.spool))
    if args.json:
        print(json_text.dumps(status, indent=2))
    else:
        print("\n".join(status_lines(status)))
    return 0


def _requeue(args: argparse.Namespace) -> int:
    from olvf.runtime.node.spool import Spool

    spool = Spool(args.spool)
    if not spool.dead_letter.is_dir():
        raise UsageError(f"--spool {args.spool}: no dead-letter folder there; give the spool of a node (its --spool)")
    entries = sorted(p.name for p in spool.dead_letter.iterdir() if p.is_dir())
    chosen = [k for k in entries if not args.keys or any(k.startswith(prefix) for prefix in args.keys)]
    unknown = [prefix for prefix in args.keys if not any(k.startswith(prefix) for k in entries)]
    if unknown:
        raise UsageError(f"not in dead-letter: {', '.join(unknown)}; 'olvf-serve status' lists the keys")
    for key in chosen:
        spool.requeue(key)
    print(f"{len(chosen)} result(s) put back in the queue to send")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["status"]:
        return run_main(f"{PROG} status", build_status_parser(), _status, argv[1:])
    if argv[:1] == ["requeue"]:
        return run_main(f"{PROG} requeue", build_requeue_parser(), _requeue, argv[1:])
    return run_main(PROG, build_parser(), _serve, argv)


if __name__ == "__main__":
    sys.exit(main())
