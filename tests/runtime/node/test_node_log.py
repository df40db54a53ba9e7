"""The node's log cannot be swallowed: lines other threads log while a study decodes all reach stderr.

The reader points file descriptor 2 at a file around every DICOM decode, to catch what native decoders print
there (``native_stderr``). That is process-wide: a line another thread logged meanwhile used to land in that
study's notes instead of the journal (the start-up line among them). The run is a subprocess, so that the real
fd 2 is what is observed, not pytest's capture.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LINES = 200

# Every line is logged while a decode holds fd 2 redirected: the decode waits inside native_stderr until the
# other thread has logged one line, so each line falls in a window, not only the few that happen to.
SCRIPT = r"""
import json, sys, threading
from contextlib import contextmanager

from olvf.runtime.inputs import codecs
from olvf.runtime.inputs.reader import read_radiograph
from olvf.runtime.node.studylog import StudyLog, node_stderr

path, lines = sys.argv[1], int(sys.argv[2])
real = codecs.native_stderr
inside, logged = threading.Semaphore(0), threading.Semaphore(0)


@contextmanager
def held_open(captured):
    with real(captured):
        inside.release()
        logged.acquire(timeout=10)
        yield


codecs.native_stderr = held_open
notes = []


def decode():
    for _ in range(lines + 2):
        notes.extend(read_radiograph(path).info.notes)


def talk(log):
    inside.acquire(timeout=10)
    log.node("listening as OLVFNODE on 127.0.0.1:11112 (the start-up line)")
    logged.release()
    for i in range(lines):
        inside.acquire(timeout=10)
        log.node(f"line {i:03d} from another thread")
        logged.release()
    inside.acquire(timeout=10)
    crash = threading.Thread(target=fail)  # a bug in another thread: its traceback goes to sys.stderr
    crash.start()
    crash.join()
    logged.release()


def fail():
    raise RuntimeError("a traceback from another thread")


with node_stderr():
    log = StudyLog()
    threads = [threading.Thread(target=decode), threading.Thread(target=talk, args=(log,))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"swallowed": [n for n in notes if "node:" in n or "another thread" in n]}))
"""


@pytest.fixture(scope="module")
def compressed_phantom(tmp_path_factory) -> Path:
    from olvf.phantom import make_phantom, write_dicom

    path = tmp_path_factory.mktemp("log") / "phantom-j2k.dcm"
    try:
        write_dicom(make_phantom(seed=5, size=(512, 400)), path, jpeg2000=True)
    except Exception as exc:  # noqa: BLE001 - the encoder is an optional codec
        pytest.skip(f"cannot write a JPEG 2000 phantom here ({type(exc).__name__}: {exc})")
    return path


def test_lines_logged_by_another_thread_during_decodes_all_reach_stderr(compressed_phantom):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(compressed_phantom), str(LINES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["swallowed"] == [], "log lines ended up in a study's decoder notes"
    assert "node: listening as OLVFNODE" in done.stderr, "the start-up line vanished"
    assert "RuntimeError: a traceback from another thread" in done.stderr
    logged = [line for line in done.stderr.splitlines() if "node: line " in line]
    assert len(logged) == LINES, f"{LINES - len(logged)} of {LINES} lines never reached stderr"
    assert [line.split("line ")[1][:3] for line in logged] == [f"{i:03d}" for i in range(LINES)]
