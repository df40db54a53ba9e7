"""``olvf-phantom --set``: a whole labelled set in the hospital format, reproducible from its seed, written whole."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from olvf.phantom import DEFORMITIES, LEVELS
from olvf.phantom.cli import main
from olvf.phantom.sets import composition, plan_set
from olvf.runtime.validation.labels import read_labels

SMALL = "320x256"  # the smallest field the phantom draws quickly; the set's logic does not depend on size


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("sets") / "held-out"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--set", str(folder), "--count", "10", "--seed", "5000", "--size", SMALL]) == 0
    return folder, out.getvalue()


def test_the_label_reader_reads_the_set_back_with_its_composition(phantom_set) -> None:
    folder, printed = phantom_set
    labelled = read_labels(folder)
    recorded = json.loads((folder / "set.json").read_text())
    planned = composition(plan_set(10, 5000))
    assert recorded["composition"] == planned
    got = labelled.composition()
    assert got["studies"] == 10 and got["vertebrae"] == 60 and got["with_box"] == 60
    assert got["classes"] == planned["classes"] and got["studies_with_fresh"] == planned["studies_with_fresh"]
    assert got["levels"] == {level: 10 for level in LEVELS}
    c = planned["classes"]
    assert f"60 vertebrae: {c['normal']} normal, {c['old']} old, {c['fresh']} fresh" in printed
    assert "phantom seeds 5000-5009" in printed and f"{planned['monochrome1']} MONOCHROME1" in printed
    assert [s.key for s in labelled.studies] == [f"phantom-{5000 + i}.dcm" for i in range(10)]


def test_labels_hold_the_phantoms_truth_boxes_and_the_files_their_variants(phantom_set) -> None:
    folder, _ = phantom_set
    labelled = read_labels(folder)
    recorded = {s["file"]: s for s in json.loads((folder / "set.json").read_text())["studies"]}
    for study in labelled.studies:
        truth = json.loads(study.path.with_suffix(".json").read_text())
        assert [(v.level, v.label, list(v.box)) for v in study.vertebrae] == [
            (t["level"], t["class"], t["box"]) for t in truth["levels"]
        ]
        ds = pydicom.dcmread(study.path, stop_before_pixels=True)
        record = recorded[study.key]
        assert ds.PhotometricInterpretation == record["photometric_interpretation"]
        assert (ds.file_meta.TransferSyntaxUID == JPEG2000Lossless) == (
            record["transfer_syntax"] == "JPEG 2000 Lossless"
        )
        assert {f["level"]: f["class"] for f in record["fractures"]} == {
            v.level: v.label for v in study.vertebrae if v.label != "normal"
        }
    assert sum(r["photometric_interpretation"] == "MONOCHROME1" for r in recorded.values()) == 2
    assert sum(r["transfer_syntax"] == "JPEG 2000 Lossless" for r in recorded.values()) == 2


def test_the_same_command_writes_the_same_set_and_refuses_to_overwrite(phantom_set, tmp_path: Path, capsys) -> None:
    folder, _ = phantom_set
    before = (folder / "labels.csv").read_bytes()
    assert main(["--set", str(folder), "--count", "10", "--seed", "5000", "--size", SMALL]) == 8
    assert "pass --force" in capsys.readouterr().err and (folder / "labels.csv").read_bytes() == before
    again = tmp_path / "again"
    assert main(["--set", str(again), "--count", "10", "--seed", "5000", "--size", SMALL]) == 0
    assert (again / "labels.csv").read_bytes() == before
    for name in ("phantom-5003.dcm", "set.json"):
        assert (again / name).read_bytes() == (folder / name).read_bytes()
    assert main(["--set", str(again), "--count", "3", "--seed", "77", "--size", SMALL, "--force"]) == 0
    assert len(read_labels(again).studies) == 3 and not (again / "phantom-5000.dcm").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_a_large_set_mixes_every_class_and_deformity() -> None:
    plan = plan_set(100, 5000)
    comp = composition(plan)
    assert comp["monochrome1"] == comp["jpeg2000"] == 20
    assert sum(s.monochrome1 and s.jpeg2000 for s in plan) == 10
    assert all(n >= 40 for n in comp["classes"].values())
    assert all(comp["deformities"][d] >= 20 for d in DEFORMITIES)
    assert [s.seed for s in plan] == list(range(5000, 5100))


def test_each_study_depends_on_its_phantom_seed_only() -> None:
    plan = plan_set(100, 5000)
    assert plan == plan_set(100, 5000) and plan[:10] == plan_set(10, 5000) and plan[50:] == plan_set(50, 5050)
    assert plan_set(1, 5001) != plan_set(1, 5002)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "{d}", "--fracture", "L2:fresh"], "--fracture cannot be used with --set"),
        (["--set", "{d}", "--monochrome1", "--jpeg2000"], "--monochrome1, --jpeg2000 cannot be used with --set"),
        (["x.dcm", "--set", "{d}"], "give either OUT.dcm (x.dcm) or --set DIR, not both"),
        (["x.dcm", "--count", "3"], "--count is for --set DIR"),
        ([], "give the DICOM file to write (OUT.dcm), or --set DIR"),
    ],
)
def test_set_options_that_do_not_fit_are_one_line(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    d = tmp_path / "s"
    assert main([a.format(d=d) for a in argv]) == 3
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not d.exists()
