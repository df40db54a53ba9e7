"""olvf-validate end to end: a labelled phantom set through the study pipeline, routes compared, the operating
point written into the bundle and taken back.

The metrics themselves are checked against scikit-learn in test_validation_metrics; here: that the command runs
the deployed pipeline (its predictions are olvf-infer's), gates routes, and changes a bundle only as asked.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

import olvf
from olvf.phantom.sets import write_phantom_set
from olvf.runtime.validation.cli import main as validate_main

SIZE = (1000, 800)


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = validate_main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("set") / "phantoms"
    write_phantom_set(folder, count=6, seed=9000, size=SIZE)
    return folder


@pytest.fixture(scope="module")
def levels_only(phantom_set: Path) -> Path:
    """The same set labelled by level only (no boxes), as a hospital without box annotations writes it: the
    tests' constant detector names L1-L5 by order, so level names match while its boxes match nothing."""
    rows = [line.split(",")[:3] for line in (phantom_set / "labels.csv").read_text().splitlines()]
    labels = phantom_set.parent / "levels-only.csv"
    labels.write_text(
        "\n".join(
            ",".join(f"phantoms/{c}" if i and not j else c for j, c in enumerate(row)) for i, row in enumerate(rows)
        )
        + "\n"
    )
    return labels


@pytest.fixture
def bundle(cascade_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cascade_bundle, tmp_path / "bundle"))


def test_routes_run_the_pipeline_and_the_reference_gates_the_others(bundle, phantom_set, levels_only, tmp_path):
    out = tmp_path / "report"
    code, stdout, stderr = run_cli(
        [
            "--bundle", str(bundle), str(levels_only), "--route", "onnxruntime-fp32", "--route", "torch",
            "--bootstrap", "50", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0, stderr
    assert "gate passed: torch agree with onnxruntime-fp32" in stdout
    report = json.loads((out / "validation.json").read_text())
    assert report["comparison"]["passed"] is True
    assert {p.name for p in out.iterdir()} >= {"validation.json", "validation.md", "roc_fracture.png", "roc_fresh.png"}
    assert "missed vertebrae" in stdout
    # The predictions validated are the deployed pipeline's: the same probabilities olvf-infer reports.
    first = sorted(phantom_set.glob("*.dcm"))[0]
    with olvf.load(bundle, backend="onnxruntime", device="cpu") as rt:
        study = rt.infer(first)
    route = report["routes"]["onnxruntime-fp32"]
    scored = [v for v in route["vertebrae"] if v["study"] == f"phantoms/{first.name}" and v["detected"]]
    assert len(scored) == 5, "L1-L5 matched by level name"
    by_level = dict(zip(study.detections.levels, study.classification.probabilities.tolist()))
    for vertebra in scored:
        expected = by_level[vertebra["predicted_level"]]
        assert list(vertebra["probabilities"].values()) == pytest.approx(expected, abs=1e-6)


def test_the_operating_point_is_written_atomically_used_and_restorable(bundle, phantom_set, levels_only, tmp_path):
    before = json.loads((bundle / "manifest.json").read_text())["operating_points"]["fresh"]
    code, stdout, stderr = run_cli(
        [
            "--bundle", str(bundle), str(levels_only), "--route", "onnxruntime-fp32", "--bootstrap", "0",
            "--target-sensitivity", "0.5", "--write-operating-point", "--out", str(tmp_path / "r"),
        ]
    )  # fmt: skip
    assert code == 0, stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    new = manifest["operating_points"]["fresh"]
    (entry,) = manifest["operating_point_history"]
    assert entry["fresh"] == before and entry["replaced_by"] == new and entry["target_sensitivity"] == 0.5
    assert entry["set"]["sha256"] and f"{before:g} -> {new:.4f}" in stdout
    assert [p.name for p in bundle.iterdir() if p.name.startswith(".")] == [], "no temporary file left"
    with olvf.load(bundle, backend="onnxruntime") as rt:
        study = rt.infer(sorted(phantom_set.glob("*.dcm"))[0])
    assert study.decision.operating_point == new, "olvf-infer decides at the stored point"
    code, stdout, _ = run_cli(["--bundle", str(bundle), "--restore-operating-point"])
    assert code == 0 and f"{before:g} restored" in stdout
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["operating_points"]["fresh"] == before and manifest["operating_point_history"] == []
    code, _, err = run_cli(["--bundle", str(bundle), "--restore-operating-point"])
    assert code == 2 and "no earlier operating point" in err


def test_a_bad_labels_file_gets_one_line_naming_the_row(bundle, phantom_set, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(phantom_set, broken)
    rows = (broken / "labels.csv").read_text().splitlines()
    rows[3] = rows[3].replace("normal", "frsh").replace("fresh", "frsh").replace("old", "frsh")
    (broken / "labels.csv").write_text("\n".join(rows) + "\n")
    code, _, err = run_cli(["--bundle", str(bundle), str(broken), "--out", str(tmp_path / "r")])
    assert code == 3 and len(err.strip().splitlines()) == 1 and "row 4" in err and "frsh" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--route", "tensort"], "unknown backend 'tensort'"),
        (["--route", "onnxruntime-int3"], "unknown precision 'int3'"),
        (["--write-operating-point"], "needs --target-sensitivity"),
    ],
)
def test_argument_errors_are_usage_errors(bundle, phantom_set, tmp_path, argv, message) -> None:
    code, _, err = run_cli(["--bundle", str(bundle), str(phantom_set), "--out", str(tmp_path / "r"), *argv])
    assert code == 2 and message in err and "Traceback" not in err


def test_export_verify_gates_numerically_passing_routes_on_a_labelled_set(bundle, levels_only, capsys) -> None:
    from olvf.export.cli import main as export_main

    assert export_main(["--verify", str(bundle), "--labels", str(levels_only)]) == 0
    out = capsys.readouterr().out
    assert "ONNX Runtime CPU, FP16 graphs: pass" in out
    assert "clinical gate passed on 6 labelled studies: ONNX Runtime CPU, FP16 graphs" in out
    assert "keep the decisions of ONNX Runtime FP32" in out


def test_labels_without_verify_is_a_usage_error(levels_only, capsys) -> None:
    from olvf.export.cli import main as export_main

    assert export_main(["--labels", str(levels_only)]) == 2


def test_comparing_routes_on_a_set_without_every_class_is_refused_before_it_runs(bundle, phantom_set, tmp_path):
    rows = (phantom_set / "labels.csv").read_text().splitlines()
    header = rows[0].split(",")
    label = header.index("class")
    relabelled = [rows[0]] + [",".join("normal" if i == label else c for i, c in enumerate(r.split(","))) for r in
                              rows[1:]]  # fmt: skip
    labels = phantom_set / "all-normal.csv"
    labels.write_text("\n".join(relabelled) + "\n")
    out = tmp_path / "report"
    code, _, err = run_cli(
        ["--bundle", str(bundle), str(labels), "--route", "onnxruntime-fp32", "--route", "torch", "--out", str(out)]
    )
    assert code == 2 and "Traceback" not in err
    assert "0 old, 0 fresh vertebrae" in err and "no route can be judged on it" in err
    assert "studies through the pipeline" not in err and not out.exists(), "refused before any study ran"


def test_studies_not_assessed_are_counted_left_out_of_the_figures_and_gated(bundle, phantom_set, tmp_path):
    """One film of the set relabelled CT: no verdict, counted in the not-assessed rate, the table is of the others."""
    import warnings

    import pydicom

    folder = Path(shutil.copytree(phantom_set, tmp_path / "phantoms"))
    ct = sorted(folder.glob("*.dcm"))[1]
    ds = pydicom.dcmread(ct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds.Modality = "CT"
    ds.save_as(ct)
    out = tmp_path / "report"
    code, stdout, stderr = run_cli(
        ["--bundle", str(bundle), str(folder), "--route", "onnxruntime-fp32", "--bootstrap", "0", "--out", str(out)]
    )
    assert code == 0, stderr
    assert "not assessed         1 of 6 studies (16.7%), e.g. Modality (0008,0060) is CT" in stdout
    route = json.loads((out / "validation.json").read_text())["routes"]["onnxruntime-fp32"]
    assert route["not_assessed"]["count"] == 1 and route["not_assessed"]["rate"] == pytest.approx(1 / 6)
    assert route["not_assessed"]["studies"][0]["study"].endswith(ct.name)
    assert route["composition"]["studies"] == 5 and not any(v["study"].endswith(ct.name) for v in route["vertebrae"])
    assert "Not assessed (no verdict: outside the bundle's intended use): 1 of 6" in (out / "validation.md").read_text()
