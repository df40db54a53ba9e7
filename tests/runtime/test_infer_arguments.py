"""olvf-infer's arguments: every mistake has its documented exit code; the anterior side and escaped output."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import pytest
from hostile_inputs import ESCAPES, good_dataset

from olvf.runtime.cli import main
from olvf.runtime.steps.regions import DEFAULT_SOURCE, geometry_from_orientation


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own errors
            code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no INPUT given"),
        (["--batch", "0", "x.dcm"], "--batch: expected a whole number of at least 1"),
        (["--batch-memory", "0", "x.dcm"], "--batch-memory: expected a whole number of at least 1"),
        (["--max-crops", "-3", "x.dcm"], "--max-crops: expected a whole number of at least 1"),
        (["--anterior", "up", "x.dcm"], "--anterior: invalid choice"),
        (["--precision", "fp8", "x.dcm"], "--precision: invalid choice"),
        (["--device", "gpu", "x.dcm"], "use cpu, cuda, tensorrt or a GPU index"),
        (["--no-such-flag", "x.dcm"], "unrecognized arguments"),
        (["--engine-max-batch", "4", "x.dcm"], "--engine-max-batch applies to engine builds"),
    ],
    ids=["no-input", "batch", "batch-memory", "max-crops", "anterior", "precision", "device", "unknown", "engine"],
)
def test_argument_errors_exit_2_with_one_line(tiny_bundle: Path, tmp_path: Path, argv: list[str], message) -> None:
    code, out, err = _cli(["--bundle", str(tiny_bundle), "--out", str(tmp_path / "o"), *argv])
    assert code == 2 and out == "" and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_an_out_that_is_a_file_exits_8_before_any_work(tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "o").write_text("not a folder")
    code, _, err = _cli(["--bundle", str(tiny_bundle), "--out", str(tmp_path / "o"), "x.dcm"])
    assert code == 8 and "is a file, not a folder; choose another --out" in err


@pytest.mark.parametrize(
    ("orientation", "side", "source"),
    [
        (("P", "F"), "left", "Patient Orientation (0020,0020) P\\F: rows run towards posterior"),
        (("A", "F"), "right", "Patient Orientation (0020,0020) A\\F: rows run towards anterior"),
        (("AL", "F"), "right", "rows run towards anterior"),
        (("L", "F"), "left", "does not say (not a lateral view?)"),
        (None, "left", "the file has no Patient Orientation"),
    ],
)
def test_the_anterior_side_comes_from_patient_orientation(orientation, side: str, source: str) -> None:
    geometry = geometry_from_orientation(orientation)
    assert geometry.anterior == side and source in geometry.anterior_source
    if side == "left" and "Patient Orientation (0020,0020) P" not in geometry.anterior_source:
        assert geometry.anterior_source.startswith(DEFAULT_SOURCE)


def test_a_film_facing_right_is_read_so_and_the_flag_overrides_it(cascade_bundle: Path, tmp_path: Path) -> None:
    ds = good_dataset()
    ds.PatientOrientation = ["A", "F"]
    ds.save_as(tmp_path / "right.dcm", enforce_file_format=True)
    for flag, side, source in (
        ([], "right", "Patient Orientation (0020,0020) A\\F"),
        (["--anterior", "left", "--force"], "left", "--anterior left"),
    ):
        code, out, _ = _cli(
            [
                "--bundle",
                str(cascade_bundle),
                "--out",
                str(tmp_path / "o"),
                "--json",
                *flag,
                str(tmp_path / "right.dcm"),
            ]
        )
        (entry,) = json.loads(out)
        regions = entry["report"]["gradcam_regions"]
        assert code == 0 and regions["anterior_side"] == side and regions["anterior_source"].startswith(source)


def test_header_text_and_file_names_reach_the_terminal_escaped(cascade_bundle: Path, tmp_path: Path) -> None:
    ds = good_dataset()
    evil = tmp_path / f"film{ESCAPES}.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that such a Modality is invalid: that is the point
        ds.Modality = "DX" + ESCAPES[:8]
        ds.save_as(evil, enforce_file_format=True)
    code, out, err = _cli(["--bundle", str(cascade_bundle), "--out", str(tmp_path / "o"), str(evil)])
    # Such a Modality is not DX: the study is not assessed (exit 9), and the reason shows the value escaped too.
    assert code == 9 and err == "" and "\x1b" not in out and "film\\x1b[2K" in out
    assert "Modality (0008,0060) is DX\\x1b[2K\\x1b[1A; the bundle is for CR, DX" in out
    (folder,) = (tmp_path / "o").iterdir()
    report = json.loads((folder / "report.json").read_text())
    assert report["input"]["modality"] == "DX\\x1b[2K\\x1b[1A" and "\x1b" not in folder.name


def test_an_unreadable_folder_is_one_line_naming_it(tmp_path: Path, monkeypatch) -> None:
    """Root reads every folder, so the refusal is staged: the folder's listing fails as it would for a user."""
    from olvf.runtime.inputs.discovery import expand_argument

    locked = tmp_path / "scans"
    locked.mkdir()
    real = Path.iterdir

    def refused(self: Path):
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", refused)
    expanded = expand_argument(str(locked))
    assert expanded.files == () and "cannot be read (Permission denied); check its permissions" in str(expanded.error)
