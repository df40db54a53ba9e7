"""``olvf-validate``: the study's results table for a deployed bundle, on a labelled set, route against route.

    olvf-validate --bundle engines/ SET [--route onnxruntime-fp32 --route onnxruntime-fp16 ...] [--out DIR]
                  [--target-sensitivity 0.9 [--write-operating-point]] [--bootstrap 2000] [--seed 0]
    olvf-validate --bundle engines/ --restore-operating-point

SET: a labelled-set CSV or the folder that holds ``labels.csv``
(:mod:`olvf.runtime.validation.labels`; ``olvf-phantom --set`` writes one).
Each route runs every study through the study pipeline; the first route is
the reference, and every other route must pass the clinical parity gate
(:mod:`olvf.runtime.validation.compare`). This module parses and prints.

Exit code: 0, or 6 when a route fails the gate (its figures are still written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import olvf
from olvf.atomic import check_replaceable
from olvf.cli_main import run_main
from olvf.errors import ParityError, UsageError
from olvf.runtime.bundle.manifest import DEFAULT_BUNDLE
from olvf.runtime.bundle.tolerances import GATE_CLASSES
from olvf.runtime.study.pipeline import DEFAULT_BATCH
from olvf.runtime.validation.compare import GateLimits
from olvf.runtime.validation.evaluate import MISSED_RULE, ValidationResult
from olvf.runtime.validation.labels import LabelledSet, read_labels
from olvf.runtime.validation.report import fmt, write_report
from olvf.runtime.validation.routes import (
    RouteRun,
    parse_route,
    record_passed_routes,
    restore_operating_point,
    route_labels,
    set_operating_point,
    validate_routes,
)

PROG = "olvf-validate"


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, not {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, not {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compute the study's per-vertebra table (accuracy, sensitivity, specificity, AUC with 95% "
        "bootstrap intervals; detection mAP; the MRI operating point) for a bundle on a labelled set, and gate "
        "faster routes against the first.",
        epilog="Studies outside the bundle's intended use (its header, the detected column or the bundle's domain "
        "say the film is not one the bundle was made for) are not assessed: they are left out of the figures and "
        "counted in the not-assessed rate, which the table reports and the gate compares between routes.",
    )
    parser.add_argument("set", nargs="?", type=Path, metavar="SET", help="labels.csv, or the folder holding it")
    parser.add_argument(
        "--bundle", type=Path, default=DEFAULT_BUNDLE, help=f"bundle folder (default {DEFAULT_BUNDLE}, the demo's)"
    )
    parser.add_argument(
        "--route",
        action="append",
        default=None,
        metavar="BACKEND[-PRECISION]",
        help="a route to validate (repeatable; the first is the reference): auto (default), onnxruntime-fp32, "
        "onnxruntime-fp16, tensorrt, torch ...",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("validation-out"), help="report folder (default validation-out/)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing report folder")
    parser.add_argument(
        "--target-sensitivity",
        type=_fraction,
        default=None,
        help="find the p(fresh) threshold reaching this sensitivity for fresh fractures, and the specificity it costs",
    )
    parser.add_argument(
        "--write-operating-point",
        action="store_true",
        help="store that threshold in the bundle (the old one is kept in its history; undo with "
        "--restore-operating-point)",
    )
    parser.add_argument(
        "--restore-operating-point", action="store_true", help="put back the bundle's previous operating point"
    )
    parser.add_argument("--bootstrap", type=_count, default=2000, help="bootstrap resamples of studies (default 2000)")
    parser.add_argument("--seed", type=_count, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--min-agreement",
        type=_fraction,
        default=GateLimits().min_agreement,
        help=f"gate: decision agreement with the reference route (default {GateLimits().min_agreement})",
    )
    parser.add_argument("--batch", type=_count, default=DEFAULT_BATCH, help="studies per model call (default 16)")
    return parser


def _headline(name: str, result: ValidationResult, run: RouteRun) -> list[str]:
    lines = [
        f"route {name}: {run.backend['name']} on {run.backend['device']} ({run.backend['precision']}), "
        f"{len(run.predictions)} studies in {run.seconds:.1f} s"
    ]
    for title, task in (("fracture vs normal", result.fracture), ("fresh vs rest (MRI)", result.fresh)):
        lines.append(
            f"  {title:20s} accuracy {fmt(task.accuracy)}  sensitivity {fmt(task.sensitivity)}  "
            f"specificity {fmt(task.specificity)}  AUC {fmt(task.auc)}"
        )
    if result.studies_offered:
        rate = result.not_assessed_rate or 0.0
        line = f"  not assessed         {len(result.not_assessed)} of {result.studies_offered} studies ({rate:.1%})"
        if result.not_assessed:
            line += f", e.g. {result.not_assessed[0][1][:160]}"
        lines.append(line + "; the figures above are of the assessed studies")
    if result.detection is not None:
        d = result.detection.to_dict()
        lines.append(f"  detection            mAP50 {_value(d.get('map50'))}  mAP50-95 {_value(d.get('map50_95'))}")
    point = result.suggested_operating_point
    if point is not None:
        if point.threshold is None:
            lines.append(f"  operating point      sensitivity {point.target_sensitivity:g} not reachable: {point.note}")
        else:
            lines.append(
                f"  operating point      p(fresh) >= {point.threshold:.4f} reaches sensitivity "
                f"{fmt(point.sensitivity)} at specificity {fmt(point.specificity)}"
            )
    return lines


def _value(figure: Any) -> str:
    if isinstance(figure, dict):
        value = figure.get("value")
        return "n/a" if value is None else f"{value:.3f}"
    return "n/a" if figure is None else f"{figure:.3f}"


def run(args: argparse.Namespace) -> int:
    if args.restore_operating_point:
        if args.set is not None or args.write_operating_point:
            raise UsageError("--restore-operating-point takes only --bundle")
        removed, restored = restore_operating_point(args.bundle)
        print(f"bundle {args.bundle}: operating point {removed:g} removed, {restored:g} restored")
        return 0
    if args.set is None:
        raise UsageError("no SET given: name a labelled-set CSV or its folder (olvf-phantom --set writes one)")
    if args.write_operating_point and args.target_sensitivity is None:
        raise UsageError("--write-operating-point needs --target-sensitivity (the sensitivity the threshold reaches)")
    routes = [parse_route(text) for text in (args.route or ["auto"])]
    names = route_labels(routes)
    check_replaceable(args.out, force=args.force)  # before minutes of work
    labelled_set = read_labels(args.set)
    if len(routes) > 1:
        _require_every_class(labelled_set)  # before any study runs: the gate could not judge such a set
    validation = validate_routes(
        args.bundle,
        labelled_set,
        routes,
        progress=lambda line: print(f"{PROG}: {line}", file=sys.stderr, flush=True),
        target_sensitivity=args.target_sensitivity,
        bootstrap=args.bootstrap,
        seed=args.seed,
        batch=args.batch,
        limits=GateLimits(min_agreement=args.min_agreement),
    )
    results, runs, comparison, context = validation.results, validation.runs, validation.comparison, validation.context
    labelled = validation.labelled
    files = write_report(args.out, results, comparison=comparison, context=context, force=args.force)
    for name in names:
        print("\n".join(_headline(name, results[name], runs[name])))
    print(f"missed vertebrae: {MISSED_RULE}")
    if args.write_operating_point:
        point = results[names[0]].suggested_operating_point
        if point is None or point.threshold is None:
            raise UsageError(
                f"no threshold reaches sensitivity {args.target_sensitivity:g} on this set "
                f"({point.note if point else 'no fresh fracture labelled'}); nothing was written"
            )
        old, _ = set_operating_point(
            args.bundle,
            point.threshold,
            {
                "by": f"{PROG} {olvf.__version__}",
                "route": names[0],
                "target_sensitivity": args.target_sensitivity,
                "sensitivity": point.sensitivity.value,
                "specificity": point.specificity.value,
                "set": context["set"],
                "studies": len(labelled.studies),
            },
        )
        print(
            f"operating point of {args.bundle}: {old:g} -> {point.threshold:.4f} (undo: {PROG} --bundle "
            f"{args.bundle} --restore-operating-point)"
        )
    print(f"report: {files.markdown} (and {files.json.name}, ROC curves, confusion matrices)")
    if comparison is not None:
        if not comparison.passed:
            raise ParityError("clinical parity gate failed: " + "; ".join(comparison.reasons), comparison.to_dict())
        print(
            f"gate passed: {', '.join(names[1:])} agree with {names[0]} (decision agreement >= "
            f"{args.min_agreement:g}, no figure outside the reference's 95% interval)"
        )
        record_passed_routes(args.bundle, validation, progress=print)
    return 0


def _require_every_class(labelled: LabelledSet) -> None:
    counts = dict.fromkeys(GATE_CLASSES, 0)
    for study in labelled.studies:
        for vertebra in study.vertebrae:
            counts[vertebra.label] = counts.get(vertebra.label, 0) + 1
    missing = [c for c in GATE_CLASSES if not counts[c]]
    if missing:
        held = ", ".join(f"{counts[c]} {c}" for c in GATE_CLASSES)
        raise UsageError(
            f"{labelled.source} holds {held} vertebrae: with no {' and no '.join(missing)} vertebra the gate's "
            "figures cannot be measured, so no route can be judged on it; compare routes on a set that holds every "
            "class"
        )


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
