"""A real Triton Inference Server on loopback (PyTriton's tritonserver), serving a repository olvf-export wrote.

The server runs ``export/triton_local.py`` in PyTriton's own environment
(``tests/triton/make_env.sh``, which CI runs first); without it the tests that
need a server skip, saying how to make it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from peers import free_port

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENV = Path.home() / ".cache" / "olvf" / "pytriton-0.7.0" / "bin" / "python"
READY = "serving olvf_detector, olvf_ensemble on"


def pytriton_python() -> Path:
    """PyTriton's Python, or skip naming the command that makes it."""
    python = Path(os.environ.get("OLVF_PYTRITON_PYTHON", DEFAULT_ENV))
    if not python.is_file():
        pytest.skip(f"no PyTriton environment at {python}: make it with tests/triton/make_env.sh")
    probe = subprocess.run(
        [str(python), "-c", "import pytriton, onnxruntime, tritonclient.grpc"], capture_output=True, timeout=120
    )
    if probe.returncode != 0:
        pytest.skip(f"{python} cannot import pytriton, onnxruntime and tritonclient: run tests/triton/make_env.sh")
    return python


class TritonServer:
    """``export/triton_local.py REPO`` on free loopback ports; its log in a file."""

    def __init__(self, repository: Path, folder: Path) -> None:
        self.repository = repository
        self.grpc_port, self.http_port = free_port(), free_port()
        self.log_path = folder / "triton.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 180) -> TritonServer:
        python = pytriton_python()
        command = [
            str(python),
            str(ROOT / "export" / "triton_local.py"),
            str(self.repository),
            "--grpc-port",
            str(self.grpc_port),
            "--http-port",
            str(self.http_port),
            "--threads",
            "1",
        ]
        # PyTriton's model sockets live in its workspace, whose path a socket address limits to 107 characters.
        self.workspace = Path(tempfile.mkdtemp(prefix="olvf-triton-", dir="/tmp"))
        command += ["--workspace", str(self.workspace / "ws")]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while READY not in self.log:
            if self.process.poll() is not None:
                raise AssertionError(f"the Triton server exited with {self.process.returncode}:\n{self.log[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the Triton server was not ready in {timeout:.0f} s:\n{self.log[-3000:]}")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None
        if getattr(self, "workspace", None) is not None:
            shutil.rmtree(self.workspace, ignore_errors=True)
