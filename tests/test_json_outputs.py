"""No NaN or infinity reaches a manifest, a report or any JSON olvf writes: what was not measured is null.

A bare ``NaN`` is not JSON (strict readers refuse the file) and compares false with every limit (a gate that read
one passed). Every writer goes through :func:`olvf.json_text.dumps`, which refuses them; this module checks that
function, that no writer bypasses it, and the figures that used to be NaN.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

import olvf.json_text as json_text

ROOT = Path(__file__).resolve().parents[1]
#: json.dumps calls that make identifiers from strings (hashed, never written as figures)
IDENTIFIERS = {
    ("runtime/node/spool.py", "_hash"),
    ("runtime/writers/dicom_uids.py", "derived_uid"),
    ("runtime/writers/dicom_uids.py", "bundle_uid"),
}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float64("nan"), np.float32("inf")])
def test_dumps_refuses_non_finite_numbers_and_names_where(bad) -> None:
    data = {"figures": {"ok": 1.5, "speedup": None, "per_level": [0.1, bad]}}
    with pytest.raises(ValueError, match=r"not a finite number at \$\.figures\.per_level\[1\]"):
        json_text.dumps(data)
    assert list(json_text.non_finite(data)) == ["$.figures.per_level[1]"]


def test_dumps_writes_strict_json_with_null_for_the_unmeasured() -> None:
    text = json_text.dumps({"value": None, "undefined": "no fresh vertebra", "n": np.int64(3).item(), "x": 0.25})

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the output")

    assert json.loads(text, parse_constant=refuse) == {
        "value": None,
        "undefined": "no fresh vertebra",
        "n": 3,
        "x": 0.25,
    }


def _json_dumps_calls() -> list[tuple[str, str, int]]:
    """Every ``json.dumps(...)`` in the installed packages: (file, enclosing function or "", line)."""
    found = []
    for folder in ("runtime", "export", "bench", "src/olvf"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "/dev/" in rel:  # development scripts, not installed
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            owner = {}
            for func in ast.walk(tree):
                if isinstance(func, ast.FunctionDef):
                    for node in ast.walk(func):
                        owner.setdefault(id(node), func.name)  # outer first; the innermost wins below
                    for node in ast.walk(func):
                        owner[id(node)] = func.name
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "dumps"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "json"
                ):
                    found.append((rel, owner.get(id(node), ""), node.lineno))
    return found


def test_every_writer_goes_through_json_text() -> None:
    calls = _json_dumps_calls()
    bypassing = sorted(c for c in calls if c[0] != "src/olvf/json_text.py" and c[:2] not in IDENTIFIERS)
    assert not bypassing, f"json.dumps outside olvf.json_text (use json_text.dumps): {bypassing}"
    # the scan finds calls at all (it would pass vacuously if it looked in the wrong place)
    assert any(rel == "src/olvf/json_text.py" for rel, _, _ in calls)
    assert {c[:2] for c in calls} >= IDENTIFIERS


def test_route_check_figures_of_a_set_without_fresh_vertebrae_are_null_not_nan() -> None:
    from types import SimpleNamespace

    from olvf.runtime.checks.routes import compare_studies

    def study(labels: list[str]) -> SimpleNamespace:
        n = len(labels)
        return SimpleNamespace(
            decision=SimpleNamespace(recommended=False),
            detections=SimpleNamespace(levels=["L1", "L2"][:n]),
            classification=SimpleNamespace(
                predictions=np.zeros(n, np.int64),
                probabilities=np.tile([1.0, 0.0, 0.0], (n, 1)),
                cam=np.ones((n, 4, 4)),
                cams={},
                labels=labels,
            ),
            timings=SimpleNamespace(ensemble=None),
        )

    figures = compare_studies([study(["normal", "normal"])], [study(["normal", "normal"])], [{"L1": "normal"}])
    assert figures["metric_change"] == {"accuracy": 0.0, "fresh_sensitivity": None}
    assert figures["speedup"] is None  # no time measured: not NaN
    assert not list(json_text.non_finite(figures))
    empty = compare_studies([study([])], [study([])], [{}])
    assert empty["decision_agreement"] is None and empty["gradcam_min_r"] is None
    assert all(v is None or math.isfinite(v) for v in empty["metric_change"].values())
    json_text.dumps(empty)
