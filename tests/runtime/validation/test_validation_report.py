"""The validation report: strict JSON with every figure, readable tables, real pictures, written atomically."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from validation_fixtures import noisy_predictions, random_set

from olvf.errors import OutputExistsError
from olvf.runtime.validation.compare import compare_routes
from olvf.runtime.validation.evaluate import evaluate
from olvf.runtime.validation.pictures import ROUTE_COLOURS
from olvf.runtime.validation.predictions import StudyPrediction
from olvf.runtime.validation.report import fmt, write_report


def strict_json(path: Path):
    def refuse(name: str):
        raise AssertionError(f"{name} in JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def routes():
    labelled = random_set(30, seed=8)
    predictions = noisy_predictions(labelled, seed=8, skill=0.4, miss=0.03)
    key = labelled.studies[4].key
    predictions[key] = StudyPrediction.failed(key, "unreadable file")
    kw = {"operating_point": 0.4, "target_sensitivity": 0.9, "bootstrap": 200, "seed": 1}
    results = {
        "onnxruntime cpu fp32": evaluate(labelled, predictions, **kw),
        "fp16": evaluate(labelled, predictions, **kw),
    }
    return results, compare_routes(results)


def test_report_has_every_figure_tables_and_pictures(tmp_path: Path, routes) -> None:
    results, comparison = routes
    files = write_report(tmp_path / "report", results, comparison=comparison, context={"bundle": "engines/demo"})
    data = strict_json(files.json)
    assert data["schema"] == "olvf-validation/1" and data["context"] == {"bundle": "engines/demo"}
    assert "missed vertebra is scored as predicted normal" in data["missed_rule"]
    route = data["routes"]["onnxruntime cpu fp32"]
    result = results["onnxruntime cpu fp32"]
    fresh = route["tasks"]["fresh"]
    assert fresh["sensitivity"]["value"] == result.fresh.sensitivity.value
    assert fresh["sensitivity"]["ci95"]["low"] == result.fresh.sensitivity.interval.low
    assert fresh["roc"]["thresholds"][0] is None and len(fresh["roc"]["fpr"]) == len(result.fresh.roc.fpr)
    assert route["confusion_matrix"]["counts"] == [list(r) for r in result.confusion.counts]
    assert route["detection"]["map50"]["value"] == result.detection.map50.value
    assert route["suggested_operating_point"]["threshold"] == result.suggested_operating_point.threshold
    assert route["failed_studies"] == [{"study": "s004.dcm", "error": "unreadable file"}]
    assert len(route["vertebrae"]) == 180 and route["missed"]["count"] == len(result.missed)
    assert data["comparison"]["passed"] is True

    md = files.markdown.read_text()
    assert "Vertebrae the detector missed count against sensitivity" in md
    row = next(line for line in md.splitlines() if line.startswith("| fracture (old or fresh) vs normal"))
    for figure in (
        result.fracture.accuracy,
        result.fracture.sensitivity,
        result.fracture.specificity,
        result.fracture.auc,
    ):
        assert fmt(figure) in row
    assert "| fresh vs rest: MRI decision | p(fresh) >= 0.4" in md
    assert "## Route comparison" in md and "**Verdict: PASS**" in md
    assert "| s004.dcm | unreadable file |" in md
    for picture in ("roc_fracture.png", "roc_fresh.png", "confusion_onnxruntime-cpu-fp32.png", "confusion_fp16.png"):
        assert f"({picture})" in md
        assert (tmp_path / "report" / picture) in files.pictures


def test_roc_picture_draws_each_route_in_its_colour(tmp_path: Path, routes) -> None:
    results, _ = routes
    files = write_report(tmp_path / "r", results)
    roc = cv2.imread(str(tmp_path / "r" / "roc_fracture.png"))
    assert roc is not None and roc.shape == (640, 640, 3)
    # The second route is drawn over the first (the same predictions): its colour is on the picture.
    colour = np.array(ROUTE_COLOURS[1])
    assert (np.abs(roc.astype(int) - colour).sum(axis=2) < 30).sum() > 500
    confusion = cv2.imread(str(files.pictures[2]))
    assert confusion is not None and confusion.std() > 10


def test_undefined_figures_are_null_in_json_and_explained_in_markdown(tmp_path: Path) -> None:
    labelled = random_set(6, seed=2, p=(1.0, 0.0, 0.0))  # no fractures at all
    result = evaluate(labelled, noisy_predictions(labelled, seed=2), operating_point=0.5, bootstrap=50, seed=0)
    files = write_report(tmp_path / "r", {"cpu": result})
    fresh = strict_json(files.json)["routes"]["cpu"]["tasks"]["fresh"]
    assert fresh["auc"] == {"value": None, "ci95": None, "undefined": "needs both positives and negatives"}
    assert fresh["sensitivity"]["value"] is None and fresh["roc"] is None
    assert "n/a (no positives)" in files.markdown.read_text()
    assert cv2.imread(str(tmp_path / "r" / "roc_fresh.png")) is not None


def test_report_is_written_whole_and_never_over_a_folder_without_force(tmp_path: Path, routes) -> None:
    results, _ = routes
    out = tmp_path / "report"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(OutputExistsError):
        write_report(out, results)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    write_report(out, results, force=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "validation.json",
            "validation.md",
            "roc_fracture.png",
            "roc_fresh.png",
            "confusion_onnxruntime-cpu-fp32.png",
            "confusion_fp16.png",
        ]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_validation_imports_nothing_heavy() -> None:
    """It runs where olvf-infer runs: no torch, no scikit-learn, no plotting library."""
    code = (
        "import sys, olvf.runtime.validation, olvf.phantom.sets\n"
        "heavy = ('torch', 'torchvision', 'ultralytics', 'sklearn', 'scipy', 'matplotlib')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_markdown_says_demo_first_and_shows_its_context_as_lists_not_python_dicts(tmp_path: Path, routes) -> None:
    results, comparison = routes
    context = {
        "olvf": "0.1.0",
        "bundle": {"path": "/srv/engines/demo", "manifest_sha256": "a" * 64, "demo": True},
        "routes": {"auto": {"name": "onnxruntime", "precision": "fp32", "seconds": 2.5}},
    }
    files = write_report(tmp_path / "demo", results, comparison=comparison, context=context)
    text = files.markdown.read_text()
    lines = text.splitlines()
    assert lines[2].startswith("> **DEMO bundle: trained on synthetic phantoms only, not for diagnosis")
    assert "{'" not in text and '{"' not in text
    assert "- bundle:\n  - path: `/srv/engines/demo`\n  - manifest sha256: `" + "a" * 64 + "`" in text
    assert "  - auto:\n    - name: onnxruntime\n    - precision: fp32\n    - seconds: 2.5" in text
    plain = write_report(tmp_path / "plain", results, comparison=comparison, context={"bundle": {"demo": False}})
    assert "DEMO" not in plain.markdown.read_text()
