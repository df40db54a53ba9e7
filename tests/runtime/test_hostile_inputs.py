"""Hostile and real-world files (tests/hostile_inputs.py, made at test time): each costs only itself.

In process, every file gets exactly the outcome it should: a one-line refusal
naming its defect, or a result showing how the defect was handled. As a
user runs it, a folder of all of them beside good films, a FIFO and a socket
goes through ``olvf-infer`` in a subprocess, which must finish (no hang),
give the good films their results, one line per bad file, no traceback, the
documented exit code, and stay under a memory bound that the bombs in it
(400 MB to 9.8 GB once decoded) would break. Memory must not grow with the
number of inputs either.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hostile_inputs import ESCAPES, Case, cases, good_bytes

from olvf.errors import BackendError, InputError
from olvf.phantom import make_phantom, write_dicom
from olvf.runtime.inputs.reader import read_radiograph
from olvf.runtime.study.pipeline import CASCADE_MIN_SIDE, StudyPipeline
from olvf.runtime.study.results import InputFailure, StudyResult

CASES = cases()
# Peak RSS of olvf-infer with the tiny test bundle over the hostile folder. Measured: about 270 MiB; the
# PNG bomb alone took main to 3.7 GB, the JPEG 2000 one to 9.8 GB.
HOSTILE_RSS_BOUND_MB = 700
GROWTH_BOUND_MB = 60  # from 2 to 20 full-size inputs at --batch 4 (main grew by about 20 MB per input)
RUN_TIMEOUT_S = 300


# The child reports its own high-water mark: ru_maxrss from wait4 would include the pytest process it
# was forked from (Linux keeps the maximum across exec), VmHWM belongs to the program exec'd.
_CHILD = """
import sys
from olvf.runtime.cli import main
code = main(sys.argv[2:])
with open("/proc/self/status") as status, open(sys.argv[1], "w") as out:
    out.write(next(line for line in status if line.startswith("VmHWM")))
sys.exit(code)
"""


def _run(argv: list[str], cwd: Path) -> tuple[int, str, str, float]:
    """olvf-infer in a subprocess, killed if it hangs: exit code, stdout, stderr, its peak RSS in MiB."""
    if not Path("/proc/self/status").exists():
        pytest.skip("peak RSS is read from /proc (Linux)")
    hwm = cwd / f".hwm-{os.getpid()}-{time.monotonic_ns()}"
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(hwm), *argv],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"olvf-infer hung for {RUN_TIMEOUT_S} s")
    peak = int(hwm.read_text().split()[1]) / 1024 if hwm.exists() else float("nan")
    hwm.unlink(missing_ok=True)
    return done.returncode, done.stdout, done.stderr, peak


# --- in process: each file's outcome ------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for case in CASES:
        case.make(folder)
    return folder


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_hostile_file_gets_its_own_outcome(made: Path, case: Case) -> None:
    path = made / case.name
    if case.refusal is None:
        result = read_radiograph(path, min_side=CASCADE_MIN_SIDE)
        assert result.pixels.dtype == np.float32 and np.isfinite(result.pixels).all()
        assert 0.0 <= result.pixels.min() < result.pixels.max() <= 1.0
        info = json.loads(json.dumps(result.info.to_dict(), allow_nan=False))  # reports are strict JSON
        assert case.handled is None or case.handled(info), info
        return
    with pytest.raises(InputError) as caught:
        read_radiograph(path, min_side=CASCADE_MIN_SIDE)
    message = str(caught.value)
    assert case.refusal in message and case.name in message
    assert "\n" not in message and "\x1b" not in message, "one line, escape sequences spelled out"


def test_the_good_file_beside_them_reads(made: Path, tmp_path: Path) -> None:
    (tmp_path / "good.dcm").write_bytes(good_bytes())
    info = read_radiograph(tmp_path / "good.dcm", min_side=CASCADE_MIN_SIDE).info
    assert info.patient_orientation == ("P", "F") and len(info.sha256 or "") == 64 and info.notes == ()


# --- as a user runs it: one folder, one subprocess ------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_run(made: Path, cascade_bundle: Path, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hostile-run")
    inputs = root / "in"
    shutil.copytree(made, inputs)
    (inputs / "good.dcm").write_bytes(good_bytes())
    film = make_phantom(11, {"L3": "old"}, (320, 256))
    write_dicom(film, inputs / f"evil{ESCAPES}.dcm")  # a good film with terminal escapes in its name
    display = np.rint(read_radiograph(inputs / "good.dcm").pixels * 255).astype(np.uint8)
    cv2.imwrite(str(inputs / "good.png"), display)
    os.mkfifo(inputs / "pipe.dcm")  # opening it to sniff for DICOM would wait for a writer forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(inputs / "socket.dcm"))
    started = time.monotonic()
    try:
        code, out, err, rss = _run(["--bundle", str(cascade_bundle), "--out", "out", "--json", "in"], root)
    finally:
        server.close()
    return {
        "root": root,
        "code": code,
        "entries": json.loads(out),
        "err": err,
        "rss": rss,
        "seconds": time.monotonic() - started,
    }


GOOD = ("good.dcm", "good.png", f"evil{ESCAPES}.dcm")
SPECIAL = {"pipe.dcm": "is a named pipe (FIFO), not a file", "socket.dcm": "is a socket, not a file"}


def test_good_films_beside_hostile_files_get_their_results(hostile_run: dict) -> None:
    results = {Path(e["input"]).name: e for e in hostile_run["entries"] if "report" in e}
    good = [name.replace(ESCAPES, ESCAPES.encode("unicode_escape").decode()) for name in GOOD]  # as printed
    assert set(results) == {c.name for c in CASES if c.refusal is None} | set(good)
    for shown in good:
        entry = results[shown]
        folder = hostile_run["root"] / entry["folder"]
        assert (folder / "report.json").is_file() and (folder / "overlay.png").is_file()
        assert [v["level"] for v in entry["report"]["vertebrae"]] == ["L1", "L2", "L3", "L4", "L5"]
    assert not any("\x1b" in path.name for path in (hostile_run["root"] / "out").iterdir()), "folder names escaped"


def test_every_bad_file_gets_one_line_naming_its_defect_and_no_traceback(hostile_run: dict) -> None:
    err = hostile_run["err"]
    assert "Traceback" not in err and "\x1b" not in err
    lines = err.splitlines()
    expected = {c.name: c.refusal for c in CASES if c.refusal is not None} | SPECIAL
    assert len(lines) == len(expected)
    for name, refusal in expected.items():
        (line,) = [line for line in lines if f"/{name}:" in line]
        assert line.startswith("olvf-infer: error: ") and refusal in line, line
    errors = {Path(e["input"]).name: e["error"] for e in hostile_run["entries"] if "error" in e}
    assert set(errors) == set(expected), "--json lists every failed input with its error"
    assert all(e["type"] == "InputError" and e["exit_code"] == 3 for e in errors.values())


def test_the_run_ends_with_the_documented_exit_code_in_bounded_time_and_memory(hostile_run: dict) -> None:
    assert hostile_run["code"] == 3  # the first failed input's: it cannot be used
    assert len(hostile_run["entries"]) == len(CASES) + len(GOOD) + len(SPECIAL)
    assert hostile_run["rss"] < HOSTILE_RSS_BOUND_MB, f"peak RSS {hostile_run['rss']:.0f} MiB"
    assert hostile_run["seconds"] < RUN_TIMEOUT_S


def test_memory_does_not_grow_with_the_number_of_inputs(cascade_bundle: Path, tmp_path: Path) -> None:
    film = tmp_path / "film.dcm"
    write_dicom(make_phantom(5, {"L1": "fresh"}, (1600, 1280)), film)
    peaks = {}
    for count in (2, 20):
        folder = tmp_path / f"in{count}"
        folder.mkdir()
        for i in range(count):
            os.link(film, folder / f"film{i:02d}.dcm")
        argv = ["--bundle", str(cascade_bundle), "--out", f"out{count}", "--batch", "4", f"in{count}"]
        code, out, err, peaks[count] = _run(argv, tmp_path)
        assert (
            code == 0
            and err == ""
            and out.splitlines()[-1] == f"{count} studies: {count} assessed, 0 not assessed (no verdict), 0 failed"
        )
    assert peaks[20] - peaks[2] < GROWTH_BOUND_MB, peaks


# --- the pipeline's isolation ---------------------------------------------------------------


def test_an_unexpected_exception_in_one_study_is_that_studys_error(cascade_bundle, tmp_path, monkeypatch) -> None:
    import olvf

    (tmp_path / "a.dcm").write_bytes(good_bytes())
    (tmp_path / "b.dcm").write_bytes(good_bytes())
    real = StudyPipeline._decode_and_crop

    def fail_for_b(self, study):
        if study.source.endswith("b.dcm"):
            raise ZeroDivisionError("float division by zero")
        return real(self, study)

    monkeypatch.setattr(StudyPipeline, "_decode_and_crop", fail_for_b)
    with olvf.load(cascade_bundle) as rt:
        a, b = StudyPipeline(rt).run([tmp_path / "a.dcm", tmp_path / "b.dcm"])
    assert isinstance(a, StudyResult) and isinstance(b, InputFailure)
    assert isinstance(b.error, InputError) and "b.dcm" in str(b.error)
    assert "ZeroDivisionError: float division by zero" in str(b.error)


def test_a_backend_error_in_a_per_input_stage_still_stops_the_run(cascade_bundle, tmp_path, monkeypatch) -> None:
    import olvf

    (tmp_path / "a.dcm").write_bytes(good_bytes())

    def broken(self, study):
        raise BackendError("onnxruntime failed: CUDA error")

    monkeypatch.setattr(StudyPipeline, "_prepare_detection", broken)
    with olvf.load(cascade_bundle) as rt, pytest.raises(BackendError, match="CUDA error"):
        list(StudyPipeline(rt).run([tmp_path / "a.dcm"]))


def test_the_results_olvf_refuses_are_those_its_writers_make() -> None:
    from olvf.runtime.inputs.dicom_header import OLVF_MANUFACTURER
    from olvf.runtime.writers.dicom_sc import MANUFACTURER

    assert MANUFACTURER == OLVF_MANUFACTURER
