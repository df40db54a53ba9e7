"""Real DICOM peers for tests: an Orthanc PACS started per test, and the DICOM command-line tools.

``orthanc`` (a pytest fixture, registered in conftest) starts the Debian
``Orthanc`` binary in the foreground with its own ``config.json`` in a
temporary folder: storage and index there, free loopback ports for HTTP and
DICOM, no plugins, HTTP limited to local clients. Orthanc 1.10 cannot bind
its DICOM port to loopback only, so it accepts C-STORE only from one
configured AET at 127.0.0.1 (``DicomAlwaysAllowStore`` false,
``DicomCheckModalityHost`` true). The fixture waits until the REST API
answers and stops Orthanc (terminate, then kill) and removes its folder at
the end. Tests skip, naming the package, where a tool is missing; CI
installs them (Debian ``orthanc``, ``dcmtk``, ``dicom3tools``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ORTHANC_AET = "OLVFPACS"
CLIENT_AET = "OLVFTEST"
START_TIMEOUT_S = 60.0

# tool -> Debian package that brings it
TOOLS = {
    "Orthanc": "orthanc",
    "storescu": "dcmtk",
    "dcmdump": "dcmtk",
    "dsr2html": "dcmtk",
    "dciodvfy": "dicom3tools",
    "echoscu": "dcmtk",
}


def tool(name: str) -> str:
    """The path of a command-line tool, or skip the test saying which Debian package brings it.

    pynetdicom installs its own ``storescu``, ``storescp``, ``echoscu`` ... into the environment's bin folder,
    with other options and output: those are passed over, the Debian tools are meant.
    """
    venv_bin = Path(sys.prefix) / "bin"
    folders = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != venv_bin.resolve()]
    path = shutil.which(name, path=os.pathsep.join([*folders, "/usr/sbin", "/usr/bin"]))
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {TOOLS.get(name, name)})")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: where to send DICOM and where to ask its REST API."""

    http_port: int
    dicom_port: int
    aet: str
    client_aet: str
    folder: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.load(response)

    def store(self, *files: Path) -> subprocess.CompletedProcess[str]:
        """C-STORE ``files`` with dcmtk's storescu; raises if any store fails.

        ``-xr -R``: RLE Lossless beside the uncompressed syntaxes, for the files' own SOP classes, so an RLE
        Secondary Capture travels as it is stored."""
        command = [
            tool("storescu"),
            "-xr",
            "-R",
            "-aet",
            self.client_aet,
            "-aec",
            self.aet,
            "127.0.0.1",
            str(self.dicom_port),
        ]
        return subprocess.run([*command, *map(str, files)], capture_output=True, text=True, timeout=60, check=True)


def _config(folder: Path, http_port: int, dicom_port: int) -> dict[str, Any]:
    return {
        "Name": "olvf-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": ORTHANC_AET,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": {"olvftest": [CLIENT_AET, "127.0.0.1", free_port()]},
        "ConcurrentJobs": 1,
        "HttpThreadsCount": 4,
        "DicomThreadsCount": 1,
    }


def _wait_until_up(orthanc: Orthanc, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            orthanc.get("/system")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"Orthanc's REST API did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def start_orthanc(folder: Path) -> Iterator[Orthanc]:
    """Run Orthanc in ``folder`` for the duration of the generator; used by the ``orthanc`` fixture."""
    binary = tool("Orthanc")
    folder.mkdir(parents=True, exist_ok=True)
    orthanc = Orthanc(free_port(), free_port(), ORTHANC_AET, CLIENT_AET, folder)
    config = folder / "config.json"
    config.write_text(json.dumps(_config(folder, orthanc.http_port, orthanc.dicom_port), indent=2))
    log = folder / "orthanc.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([binary, str(config)], cwd=folder, stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(orthanc, process, log)
        yield orthanc
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A fresh, empty Orthanc PACS on loopback ports, stopped and removed after the test."""
    yield from start_orthanc(tmp_path_factory.mktemp("orthanc"))
