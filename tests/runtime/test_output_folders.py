"""Results folders: one input each, never another's, never lost, hidden or half-written, whatever happens.

What a hostile test of the earlier main found: ``--force b/scan.dcm`` after
``a/scan.dcm b/scan.dcm`` left both folders holding b's results; two runs on
one ``--out`` both printed success while one's results were replaced; an
interrupt between the two renames of a replacement left the results only in
hidden folders; SIGTERM and SIGKILL left staging folders no later run
cleaned; a second run over a folder holding earlier results analysed the
overlays as radiographs.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_inputs import good_bytes, good_dataset

import olvf.atomic as atomic
from olvf.atomic import Staging, clean_stale, folder_lock
from olvf.errors import OutputExistsError
from olvf.runtime.writers.study_folder import OutputFolder, recorded_source, source_identity

SCRIPT = "import sys; from olvf.runtime.cli import main; sys.exit(main(sys.argv[1:]))"


def _other_film(path: Path) -> Path:
    """A second good film with other content (another SOP Instance UID), same size."""
    ds = good_dataset()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.1234.2"
    ds.save_as(path, enforce_file_format=True)
    return path


def _infer(bundle: Path, cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", SCRIPT, "--bundle", str(bundle), *args]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _source(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())["source"]


def _hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


@pytest.fixture
def two_scans(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "scan.dcm").write_bytes(good_bytes())
    return tmp_path / "a" / "scan.dcm", _other_film(tmp_path / "b" / "scan.dcm")


def test_force_replaces_only_the_same_inputs_results(cascade_bundle: Path, tmp_path: Path, two_scans) -> None:
    a, b = two_scans
    done = _infer(cascade_bundle, tmp_path, "--out", "o", "--json", "a/scan.dcm", "b/scan.dcm")
    assert done.returncode == 0, done.stderr
    assert [e["folder"] for e in json.loads(done.stdout)] == ["o/scan", "o/scan-2"]
    holds_a = _source(tmp_path / "o" / "scan")
    assert holds_a == {"path": os.path.realpath(a), "sha256": hashlib.sha256(a.read_bytes()).hexdigest()}
    assert _source(tmp_path / "o" / "scan-2")["path"] == os.path.realpath(b)
    before = (tmp_path / "o" / "scan" / "report.json").read_bytes()

    done = _infer(cascade_bundle, tmp_path, "--out", "o", "--force", "b/scan.dcm")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "scan" / "report.json").read_bytes() == before, "a's results are untouched"
    assert _source(tmp_path / "o" / "scan-2")["path"] == os.path.realpath(b)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["scan", "scan-2"]

    done = _infer(cascade_bundle, tmp_path, "--out", "o", "a/scan.dcm")
    assert done.returncode == 8 and "o/scan already exists; pass --force" in done.stderr


def test_a_folder_olvf_did_not_write_is_never_replaced(cascade_bundle: Path, tmp_path: Path, two_scans) -> None:
    (tmp_path / "o" / "scan").mkdir(parents=True)
    (tmp_path / "o" / "scan" / "mine.txt").write_text("the user's own")
    done = _infer(cascade_bundle, tmp_path, "--out", "o", "--force", "a/scan.dcm")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "scan" / "mine.txt").read_text() == "the user's own"
    assert recorded_source(tmp_path / "o" / "scan-2") == source_identity(two_scans[0])


def _place(root: str, source: str, barrier, results) -> None:
    """One process: a finished staging folder for ``source``, placed when every process is ready."""
    out = OutputFolder(Path(root), force=False)
    staging = Staging(Path(root) / "scan")
    path, sha256 = source_identity(source)
    report = {"schema": "olvf-report/1", "source": {"path": path, "sha256": sha256}, "pid": os.getpid()}
    (staging.path / "report.json").write_text(json.dumps(report))
    barrier.wait()
    try:
        results.put(("placed", str(out.place(staging, Path(source)))))
    except OutputExistsError:
        staging.discard()
        results.put(("refused", source))


@pytest.mark.parametrize("same_input", [True, False], ids=["same-input", "same-name"])
def test_concurrent_writers_each_claim_one_folder_under_the_lock(tmp_path: Path, same_input: bool) -> None:
    context = multiprocessing.get_context("fork")
    count = 6
    sources = []
    for i in range(count):
        folder = tmp_path / f"in{0 if same_input else i}"
        folder.mkdir(exist_ok=True)
        (folder / "scan.dcm").write_bytes(b"x")
        sources.append(str(folder / "scan.dcm"))
    out = tmp_path / "out"
    out.mkdir()
    barrier, results = context.Barrier(count), context.Queue()
    workers = [context.Process(target=_place, args=(str(out), s, barrier, results)) for s in sources]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    outcomes = [results.get(timeout=5) for _ in workers]
    placed = [where for what, where in outcomes if what == "placed"]
    if same_input:
        assert len(placed) == 1 and sum(what == "refused" for what, _ in outcomes) == count - 1
    else:
        assert len(placed) == count and len(set(placed)) == count
        for folder in placed:  # each folder holds the input that was placed in it, complete
            assert recorded_source(Path(folder)) is not None
        assert sorted(recorded_source(Path(f)) for f in placed) == sorted(source_identity(s) for s in sources)
    assert _hidden(out) == [], "no staging folder left"


def test_two_concurrent_runs_on_one_out_cannot_both_claim_one_input(cascade_bundle, tmp_path, two_scans) -> None:
    argv = [sys.executable, "-c", SCRIPT, "--bundle", str(cascade_bundle), "--out", "o", "a/scan.dcm"]
    runs = [subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    runs.append(subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [run.communicate(timeout=240) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 8], outputs
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["scan"]
    assert recorded_source(tmp_path / "o" / "scan") == source_identity(two_scans[0])


def _placed(out: OutputFolder, source: Path) -> Path:
    """A finished results folder for ``source`` as olvf writes one, put in place."""
    staging = Staging(out.root / "scan")
    path, sha256 = source_identity(source)
    (staging.path / "report.json").write_text(
        json.dumps({"schema": "olvf-report/1", "source": {"path": path, "sha256": sha256}})
    )
    return out.place(staging, source, sha256)


def test_a_reused_file_name_with_new_content_never_replaces_the_first_results(tmp_path: Path) -> None:
    """A PACS export that writes the next patient's film under the same name: a new folder, the first kept."""
    source = tmp_path / "inbox" / "scan.dcm"
    source.parent.mkdir()
    source.write_bytes(b"patient A's film")
    plain = OutputFolder(tmp_path / "o", force=False)
    plain.check()
    first = _placed(plain, source)
    kept = (first / "report.json").read_bytes()
    source.write_bytes(b"patient B's film")
    forced = OutputFolder(tmp_path / "o", force=True)
    forced.refuse_existing(source)  # B has no results yet: nothing to refuse
    second = _placed(forced, source)
    assert (first.name, second.name) == ("scan", "scan-2")
    assert (first / "report.json").read_bytes() == kept
    source.write_bytes(b"patient A's film")  # the same input again: its own folder is the one found
    assert forced.existing(source) == first


def test_the_content_of_a_fifo_is_never_read_to_name_its_folder(tmp_path: Path) -> None:
    """Opening a FIFO waits for a writer forever: its identity is its path alone, and the reader refuses it."""
    import threading

    fifo = tmp_path / "scan.dcm"
    os.mkfifo(fifo)
    out = OutputFolder(tmp_path / "o", force=False)
    out.check()
    (tmp_path / "o" / "scan").mkdir()
    report = {"schema": "olvf-report/1", "source": {"path": os.path.realpath(fifo), "sha256": "0" * 64}}
    (tmp_path / "o" / "scan" / "report.json").write_text(json.dumps(report))
    worker = threading.Thread(target=out.refuse_existing, args=(fifo,), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "naming the FIFO's folder opened the FIFO"


def test_a_failed_second_rename_puts_the_old_results_back(tmp_path: Path, monkeypatch) -> None:
    """Without renameat2 (NFS, SMB) the old results are moved aside first; if the new ones cannot follow,
    the old ones return rather than stay hidden."""
    target = tmp_path / "scan"
    target.mkdir()
    (target / "report.json").write_text("old results")
    staging = Staging(target)
    (staging.path / "report.json").write_text("new results")
    real_rename, calls = os.rename, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    monkeypatch.setattr(atomic.os, "rename", second_fails)
    with pytest.raises(OSError):
        atomic.commit(staging, target, replace=True)
    monkeypatch.undo()
    assert (target / "report.json").read_text() == "old results"
    staging.discard()
    assert _hidden(tmp_path) == []


def test_a_crash_between_the_two_renames_is_repaired_by_the_next_run(tmp_path: Path, monkeypatch) -> None:
    """Where renameat2 cannot swap, the old results are moved aside first; a death right then is repaired."""
    target = tmp_path / "scan"
    target.mkdir()
    (target / "report.json").write_text("old results")
    staging = Staging(target)
    (staging.path / "report.json").write_text("new results")

    class Killed(BaseException):
        pass

    real_rename, calls = os.rename, []

    def dies_after_the_first(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise Killed()  # as if SIGKILL came between the two renames
        real_rename(src, dst)

    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    monkeypatch.setattr(atomic.os, "rename", dies_after_the_first)
    with pytest.raises(Killed):
        atomic.commit(staging, target, replace=True)
    monkeypatch.undo()
    os.close(staging._fd)  # the process is dead: the kernel drops its lock (the lock file stays)
    hidden = [Path(name).suffix for name in _hidden(tmp_path)]
    assert not target.exists() and sorted(hidden) == [".lock", ".old", ".partial"], "old results moved aside"
    with folder_lock(tmp_path):
        clean_stale(tmp_path)
    assert (target / "report.json").read_text() == "old results" and _hidden(tmp_path) == []


def test_replacement_swaps_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "scan"
    target.mkdir()
    (target / "report.json").write_text("old")
    staging = Staging(target)
    (staging.path / "report.json").write_text("new")
    atomic.commit(staging, target, replace=True)
    assert (target / "report.json").read_text() == "new" and _hidden(tmp_path) == []
    if sys.platform.startswith("linux"):
        assert atomic._renameat2() is not None, "Linux replaces by an atomic exchange"


def test_staging_folders_of_dead_processes_are_cleaned_live_ones_kept(tmp_path: Path) -> None:
    dead = tmp_path / ".scan.olvf4242-deadbeef.partial"
    dead.mkdir()
    (dead / "overlay.png").write_bytes(b"half")
    alive = Staging(tmp_path / "other")  # held by this process
    with folder_lock(tmp_path):
        assert clean_stale(tmp_path) == [dead]
    assert not dead.exists() and alive.path.exists()
    alive.discard()


def _study_folders_complete(out: Path) -> None:
    for folder in out.iterdir():
        assert not folder.name.startswith("."), f"left behind: {folder.name}"
        assert (folder / "report.json").is_file() and (folder / "overlay.png").is_file(), folder


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_run_stopped_by_a_signal_leaves_whole_results_only(cascade_bundle, tmp_path: Path, signum) -> None:
    films = tmp_path / "in"
    films.mkdir()
    for i in range(12):
        (films / f"film{i:02d}.dcm").write_bytes(good_bytes())
    out = tmp_path / "out"
    argv = [sys.executable, "-c", SCRIPT, "--bundle", str(cascade_bundle), "--out", "out", "--batch", "1", "in"]
    run = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and any(not p.name.startswith(".") for p in out.iterdir())):
        time.sleep(0.05)
    run.send_signal(signum)
    _, err = run.communicate(timeout=60)
    if signum == signal.SIGTERM:
        assert run.returncode == 143 and err.strip().endswith("terminated (SIGTERM); nothing was half-written")
        assert "Traceback" not in err
        assert _hidden(out) == []
        _study_folders_complete(out)
    else:
        assert run.returncode == -signal.SIGKILL
    # The next run cleans what a SIGKILL left and completes the rest.
    done = _infer(cascade_bundle, tmp_path, "--out", "out", "in")
    assert done.returncode == 8 and "Traceback" not in done.stderr  # the finished ones exist already
    done = _infer(cascade_bundle, tmp_path, "--out", "out", "--force", "in")
    assert done.returncode == 0, done.stderr
    _study_folders_complete(out)
    assert len(list(out.iterdir())) == 12


def test_out_is_checked_before_anything_is_analysed(cascade_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    import olvf
    from olvf.runtime.cli import main

    monkeypatch.setattr(olvf, "load", lambda *a, **k: pytest.fail("the bundle must not even be loaded"))
    (tmp_path / "scan.dcm").write_bytes(good_bytes())
    (tmp_path / "results").write_text("a file")
    assert main(["--bundle", str(cascade_bundle), "--out", str(tmp_path / "results"), str(tmp_path / "scan.dcm")]) == 8


@pytest.mark.parametrize(
    ("stem", "folder"), [("x" * 240, "x" * 100), ("骨" * 80, "骨" * 33)], ids=["ascii", "three-byte-utf8"]
)
def test_a_very_long_file_name_gets_a_short_folder(cascade_bundle: Path, tmp_path: Path, stem, folder) -> None:
    """File systems allow 255 bytes a name; the staging folder's name adds about 60 to the folder's."""
    name = stem + ".dcm"
    (tmp_path / name).write_bytes(good_bytes())
    done = _infer(cascade_bundle, tmp_path, "--out", "o", "--json", name)
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)
    assert entry["folder"] == "o/" + folder


def test_olvf_never_reads_its_own_outputs(cascade_bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "film.dcm").write_bytes(good_bytes())
    first = _infer(cascade_bundle, tmp_path, "--out", "data/results", "data")
    assert first.returncode == 0, first.stderr
    # A second run over the same folder, into another --out: the first run's results are not inputs.
    second = _infer(cascade_bundle, tmp_path, "--out", "elsewhere", "--json", "data")
    assert second.returncode == 0, second.stderr
    assert [e["input"] for e in json.loads(second.stdout)] == ["data/film.dcm"]
    # Named explicitly, an overlay of olvf's is refused as what it is.
    third = _infer(cascade_bundle, tmp_path, "--out", "o3", "data/results/film/overlay.png")
    assert third.returncode == 3 and "is olvf's own output (in the results folder" in third.stderr
    fourth = _infer(cascade_bundle, tmp_path, "--out", "o4", "data/results")
    assert fourth.returncode == 3 and "data/results: holds olvf results, not radiographs" in fourth.stderr
