"""The validation report: JSON with every figure, Markdown tables, ROC curves and confusion matrices as PNG.

``write_report(folder, results, comparison=..., context=...)`` writes, all at once (a staging folder renamed into
place; an existing folder is replaced only with ``force``):

- ``validation.json``: schema ``olvf-validation/1``; the context the caller gives (bundle, backend, ...), the rule for
  missed vertebrae, every route's figures (:meth:`ValidationResult.to_dict`: tasks, confusion matrix, per level,
  detection, operating point, every study and vertebra) and the route comparison. Plain JSON types only: an
  undefined figure is ``null`` with its reason, the ROC origin's threshold (+inf) is ``null``.
- ``validation.md``: the tables a clinician reads (the study's table for both tasks with 95% intervals, confusion
  matrix, per level, detection, operating point, route comparison) and the pictures;
- ``roc_fracture.png``, ``roc_fresh.png``: every route's ROC curve, decision points marked;
- ``confusion_<route>.png``: one per route.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import olvf.json_text as json_text
from olvf.atomic import staged_directory
from olvf.runtime.validation.compare import RouteComparison
from olvf.runtime.validation.evaluate import MISSED_RULE, ValidationResult
from olvf.runtime.validation.metrics import BinaryFigures, Figure
from olvf.runtime.validation.pictures import draw_confusion, draw_roc, encode_png
from olvf.vocabulary import DEMO_WARNING

SCHEMA = "olvf-validation/1"
JSON_NAME = "validation.json"
MARKDOWN_NAME = "validation.md"
TASK_TITLES = {
    "fracture": "fracture (old or fresh) vs normal",
    "fresh": "fresh vs rest: MRI decision",
    "fresh_argmax": "fresh vs rest: argmax",
    "study_mri": "per study: MRI recommended vs fresh labelled",
}
LIST_LIMIT = 50  # rows of a list in the Markdown; the JSON has them all


@dataclass(frozen=True)
class ReportFiles:
    folder: Path
    json: Path
    markdown: Path
    pictures: tuple[Path, ...]


def report_dict(
    results: Mapping[str, ValidationResult],
    comparison: RouteComparison | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report as plain JSON data; ``json.dumps(..., allow_nan=False)`` accepts it."""
    return {
        "schema": SCHEMA,
        "context": dict(context or {}),
        "missed_rule": MISSED_RULE,
        "routes": {name: r.to_dict() for name, r in results.items()},
        "comparison": comparison.to_dict() if comparison else None,
    }


def fmt(figure: Figure, digits: int = 3) -> str:
    """``0.894 (0.871-0.915)``; ``n/a (no positives)`` when undefined."""
    if figure.value is None:
        return f"n/a ({figure.undefined})"
    text = f"{figure.value:.{digits}f}"
    if figure.interval is not None:
        text += f" ({figure.interval.low:.{digits}f}-{figure.interval.high:.{digits}f})"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _task_row(title: str, b: BinaryFigures) -> list[str]:
    return [
        title,
        b.decision,
        f"{b.positives} / {b.negatives}",
        fmt(b.accuracy),
        fmt(b.sensitivity),
        fmt(b.specificity),
        fmt(b.auc),
        fmt(b.ppv),
        fmt(b.npv),
    ]


def _route_section(name: str, r: ValidationResult, slug: str) -> list[str]:
    out = [f"## Route {name}", ""]
    out += ["### The study's table (per vertebra, 95% bootstrap intervals over studies)", ""]
    out += _table(
        [
            "task",
            "decision",
            "positives / negatives",
            "accuracy",
            "sensitivity",
            "specificity",
            "ROC AUC",
            "PPV",
            "NPV",
        ],
        [_task_row(TASK_TITLES[t], r.task(t)) for t in ("fracture", "fresh", "fresh_argmax", "study_mri")],
    )
    out += [
        f"Missed vertebrae count against sensitivity: {len(r.missed)} of {len(r.vertebrae)} labelled vertebrae "
        "were not found and are scored as normal with p(fresh) = 0.",
        "",
    ]
    c = r.confusion
    out += ["### Confusion matrix (rows labelled, columns predicted by argmax)", ""]
    out += _table(
        ["labelled \\ predicted", *c.classes, "of which missed"],
        [[cls, *row, c.missed[i]] for i, (cls, row) in enumerate(zip(c.classes, c.counts))],
    )
    out += [f"![confusion matrix](confusion_{slug}.png)", ""]
    out += ["### Per level", ""]
    out += _table(
        [
            "level",
            "vertebrae",
            "fracture sensitivity",
            "fracture specificity",
            "fracture AUC",
            "fresh sensitivity",
            "fresh specificity",
            "fresh AUC",
        ],
        [
            [
                lv.level,
                lv.vertebrae,
                fmt(lv.fracture.sensitivity),
                fmt(lv.fracture.specificity),
                fmt(lv.fracture.auc),
                fmt(lv.fresh.sensitivity),
                fmt(lv.fresh.specificity),
                fmt(lv.fresh.auc),
            ]
            for lv in r.levels
        ],
    )
    out += ["### Detection", ""]
    d = r.detection
    if d is None:
        out += [r.detection_note, ""]
    else:
        out += _table(
            [
                "studies",
                "labelled boxes",
                "predictions",
                "mAP50",
                "mAP50-95",
                "found at IoU 0.5",
                "false positives at IoU 0.5",
                "levels named right",
            ],
            [
                [
                    d.studies,
                    d.labelled,
                    d.predictions,
                    fmt(d.map50),
                    fmt(d.map50_95),
                    d.matched,
                    d.false_positives,
                    f"{fmt(d.levels_named_right)} ({d.named_right} of {d.matched})",
                ]
            ],
        )
        out += [
            f"{r.detection_note}. One class (vertebral body), greedy matching by descending detector score; AP by "
            "COCO's 101-point interpolation (a perfect detector scores 1). As YOLO training logs compute it "
            f"(ultralytics, perfect = 0.995): mAP50 {d.ultralytics_ap[0]:.3f}, "
            f"mAP50-95 {sum(d.ultralytics_ap) / len(d.ultralytics_ap):.3f}.",
            "",
        ]
    out += [
        f"Vertebrae missed (any study): {len(r.missed)} of {len(r.vertebrae)}; failed studies: {len(r.failed)}.",
        "",
    ]
    if r.studies_offered:
        out += [
            f"Not assessed (no verdict: outside the bundle's intended use): {len(r.not_assessed)} of "
            f"{r.studies_offered} studies ({(r.not_assessed_rate or 0.0):.1%}); the figures above are of the studies "
            "every route assessed.",
            "",
        ]
        if r.not_assessed:
            out += _table(["study", "reason"], [[k, why] for k, why in r.not_assessed[:LIST_LIMIT]]) + [""]
    out += ["### Operating point", ""]
    out += [f"The MRI decision above uses p(fresh) >= {r.operating_point:g}.", ""]
    op = r.suggested_operating_point
    if op is not None:
        if op.threshold is None:
            out += [f"Target sensitivity {op.target_sensitivity:g} for fresh vs rest: {op.note}.", ""]
        else:
            out += _table(
                ["target sensitivity", "threshold on p(fresh)", "sensitivity", "specificity it costs"],
                [[f"{op.target_sensitivity:g}", f"{op.threshold:.6g}", fmt(op.sensitivity), fmt(op.specificity)]],
            )
            out += [f"Threshold placed {op.note}.", ""]
    if r.failed:
        out += ["### Studies that failed (all their vertebrae counted as missed)", ""]
        out += _table(["study", "error"], [[s.key, s.error] for s in r.failed[:LIST_LIMIT]])
    if r.missed:
        out += ["### Missed vertebrae", ""]
        out += _table(
            ["study", "level", "class", "CSV row"], [[v.study, v.level, v.label, v.row] for v in r.missed[:LIST_LIMIT]]
        )
        if len(r.missed) > LIST_LIMIT:
            out += [f"... and {len(r.missed) - LIST_LIMIT} more in {JSON_NAME}.", ""]
    return out


def _comparison_section(comparison: RouteComparison) -> list[str]:
    limits = comparison.limits
    out = ["## Route comparison (clinical parity gate)", ""]
    out += [
        f"Reference: {comparison.reference}. A route passes when its class and MRI decisions agree with the "
        f"reference's on at least {100 * limits.min_agreement:g}% of labelled vertebrae"
        + (" and no figure leaves the reference's 95% interval." if limits.figures_inside_reference_interval else "."),
        "",
        f"**Verdict: {'PASS' if comparison.passed else 'FAIL'}**",
        "",
    ]
    out += _table(
        [
            "route",
            "class agreement",
            "MRI agreement",
            "figures outside reference interval",
            "studies whose MRI changed",
            "verdict",
        ],
        [
            [
                d.route,
                f"{d.class_agreement:.4f} ({d.class_agreed}/{d.vertebrae})",
                f"{d.mri_agreement:.4f} ({d.mri_agreed}/{d.vertebrae})",
                len(d.outside),
                len(d.changed_studies),
                "pass" if d.passed else "FAIL",
            ]
            for d in comparison.differences
        ],
    )
    for d in comparison.differences:
        if d.reasons:
            out += [f"{d.route} fails:", "", *[f"- {r}" for r in d.reasons], ""]
        main = [f for f in d.figures if not f.name.startswith("level.")]
        out += [f"### {d.route} against {d.reference}: figures", ""]
        out += _table(
            ["figure", d.reference, d.route, "change (95% interval)", "outside"],
            [
                [f.name, _num(f.reference), _num(f.route), _change(f), "yes" if f.outside_reference_interval else ""]
                for f in main
            ],
        )
        if d.changed:
            out += [f"### {d.route}: vertebrae whose decision changed", ""]
            out += _table(
                ["study", "level", "labelled", d.reference, d.route, "p(fresh)", "MRI"],
                [
                    [
                        c.study,
                        c.level,
                        c.label,
                        c.reference_class if c.reference_detected else "missed",
                        c.route_class if c.route_detected else "missed",
                        f"{c.reference_p_fresh:.3f} -> {c.route_p_fresh:.3f}",
                        f"{c.reference_mri} -> {c.route_mri}",
                    ]
                    for c in d.changed[:LIST_LIMIT]
                ],
            )
        if d.changed_studies:
            out += [f"### {d.route}: studies whose MRI recommendation changed", ""]
            out += _table(
                ["study", "fresh labelled", d.reference, d.route],
                [[s.study, s.fresh_labelled, s.reference_mri, s.route_mri] for s in d.changed_studies[:LIST_LIMIT]],
            )
    return out


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _change(f: Any) -> str:
    if f.change is None:
        return "n/a"
    text = f"{f.change:+.4f}"
    if f.change_interval is not None:
        text += f" ({f.change_interval.low:+.4f} to {f.change_interval.high:+.4f})"
    return text


def _context_lines(key: str, value: Any, depth: int = 0) -> list[str]:
    """A context entry as Markdown bullets: nested mappings as nested lists, never as a Python dict."""
    indent = "  " * depth
    name = key.replace("_", " ")
    if isinstance(value, Mapping):
        lines = [f"{indent}- {name}:"]
        for k, v in value.items():
            lines += _context_lines(str(k), v, depth + 1)
        return lines
    if isinstance(value, (list, tuple)):
        return [f"{indent}- {name}: {', '.join(map(str, value)) or 'none'}"]
    shown = (
        "n/a"
        if value is None
        else f"`{value}`"
        if isinstance(value, str) and ("/" in value or len(value) == 64)
        else value
    )
    return [f"{indent}- {name}: {shown}"]


def report_markdown(
    results: Mapping[str, ValidationResult],
    comparison: RouteComparison | None = None,
    context: Mapping[str, Any] | None = None,
) -> str:
    first = next(iter(results.values()))
    out = [f"# olvf validation on {first.set_source}", ""]
    bundle = (context or {}).get("bundle")
    if isinstance(bundle, Mapping) and bundle.get("demo"):
        out += [f"> **{DEMO_WARNING}.** These figures are of a demonstration model on synthetic phantoms.", ""]
    for key, value in (context or {}).items():
        out += _context_lines(key, value)
    if context:
        out.append("")
    out += [f"> **{MISSED_RULE[0].upper() + MISSED_RULE[1:]}.**", ""]
    comp = first.composition
    classes = comp.get("classes", {})
    out += [
        f"Set: {comp.get('studies')} studies, {comp.get('vertebrae')} labelled vertebrae "
        f"({', '.join(f'{n} {c}' for c, n in classes.items())}), {comp.get('with_box')} with a box. "
        f"Intervals: {first.bootstrap.resamples} bootstrap resamples of the studies (seed {first.bootstrap.seed}), "
        "percentile method; resamples in which a figure is undefined are left out.",
        "",
    ]
    out += ["![ROC fracture vs normal](roc_fracture.png) ![ROC fresh vs rest](roc_fresh.png)", ""]
    for name, r in results.items():
        out += _route_section(name, r, slug(name))
    if comparison is not None:
        out += _comparison_section(comparison)
    return "\n".join(out).rstrip() + "\n"


def slug(name: str) -> str:
    """A route name as a file name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "route"


def write_report(
    folder: str | Path,
    results: Mapping[str, ValidationResult],
    *,
    comparison: RouteComparison | None = None,
    context: Mapping[str, Any] | None = None,
    force: bool = False,
) -> ReportFiles:
    """Write the JSON, the Markdown and the pictures into ``folder`` atomically; see the module docstring."""
    if not results:
        raise ValueError("a report needs at least one route's results")
    folder = Path(folder)
    slugs = [slug(n) for n in results]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"route names {list(results)} do not give distinct file names")
    text = json_text.dumps(report_dict(results, comparison, context), indent=2) + "\n"
    pictures: dict[str, bytes] = {
        "roc_fracture.png": encode_png(
            draw_roc("ROC: fracture vs normal", {n: r.fracture for n, r in results.items()})
        ),
        "roc_fresh.png": encode_png(draw_roc("ROC: fresh vs rest", {n: r.fresh for n, r in results.items()})),
    }
    for (name, r), s in zip(results.items(), slugs):
        pictures[f"confusion_{s}.png"] = encode_png(draw_confusion(f"Confusion matrix: {name}", r.confusion))
    markdown = report_markdown(results, comparison, context)
    with staged_directory(folder, force=force) as staging:
        (staging / JSON_NAME).write_text(text, encoding="utf-8")
        (staging / MARKDOWN_NAME).write_text(markdown, encoding="utf-8")
        for name, data in pictures.items():
            (staging / name).write_bytes(data)
    return ReportFiles(folder, folder / JSON_NAME, folder / MARKDOWN_NAME, tuple(folder / n for n in pictures))
