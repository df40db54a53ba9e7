"""What the olvf-serve tests drive: studies as a modality sends them, a restartable Orthanc that counts every
C-STORE it receives, and the node itself as a separate process (so that it can be SIGKILLed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from peers import _config, free_port, tool
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from olvf.phantom import dicom_dataset, make_phantom

NODE_AET = "OLVFNODE"
MODALITY_AET = "XRAY1"
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
CR_CLASS = "1.2.840.10008.5.1.4.1.1.1"
# Identity written into every test study: none of it may reach a log line.
NAME_FAMILY = "Zephyrine"
NAME_GIVEN = "Quillbright"
ID_PREFIX = "MRN-77310"
ACCESSION_PREFIX = "ACC-90"
IDENTITY_STRINGS = (NAME_FAMILY, NAME_GIVEN, ID_PREFIX, ACCESSION_PREFIX)


@dataclass(frozen=True)
class Study:
    path: Path
    patient_id: str
    study_uid: str
    sop_uid: str


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=["olvf-serve-tests", *map(str, parts)])


def phantom_template(size: tuple[int, int] = (1000, 800)) -> Dataset:
    """One lateral lumbar phantom DX; the studies differ by identity and UIDs (the tiny bundle's detector is
    constant, so the pixels need not differ, and drawing one phantom is 20 times cheaper than twenty)."""
    return dicom_dataset(make_phantom(seed=11, fractures={"L2": "fresh"}, size=size))


def write_studies(folder: Path, count: int, template: Dataset, *, tag: str = "burst") -> list[Study]:
    folder.mkdir(parents=True, exist_ok=True)
    studies = []
    for i in range(count):
        ds = template.copy()
        ds.file_meta = template.file_meta.copy()
        ds.StudyInstanceUID = _uid(tag, i, "study")
        ds.SeriesInstanceUID = _uid(tag, i, "series")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(tag, i, "instance")
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = f"{NAME_FAMILY}^{NAME_GIVEN}{i:02d}"
        ds.PatientID = f"{ID_PREFIX}{i:02d}"
        ds.AccessionNumber = f"{ACCESSION_PREFIX}{i:03d}"
        ds.StudyDate, ds.StudyTime = "20261127", f"0315{i:02d}"
        path = folder / f"study-{i:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        studies.append(Study(path, str(ds.PatientID), str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)))
    return studies


def _file(path: Path, ds: Dataset, sop_class: str) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.save_as(path, enforce_file_format=True)
    return path


def _identity(ds: Dataset, tag: str) -> None:
    ds.SOPInstanceUID = _uid(tag, "instance")
    ds.StudyInstanceUID = _uid(tag, "study")
    ds.SeriesInstanceUID = _uid(tag, "series")
    ds.PatientName = f"{NAME_FAMILY}^{NAME_GIVEN}{tag}"
    ds.PatientID = f"{ID_PREFIX}{tag}"
    ds.AccessionNumber = f"{ACCESSION_PREFIX}{tag}"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "20261127", "0400", "1", 1, 1


def _pixels(ds: Dataset, rows: int, columns: int, value: int = 900) -> None:
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.full((rows, columns), value, np.uint16).tobytes()


def write_ct(path: Path) -> Path:
    ds = Dataset()
    _identity(ds, "ct")
    ds.Modality = "CT"
    _pixels(ds, 64, 64)
    return _file(path, ds, CT_CLASS)


def write_sr(path: Path) -> Path:
    ds = Dataset()
    _identity(ds, "sr")
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    return _file(path, ds, BASIC_TEXT_SR)


def write_chest_cr(path: Path, *, body_part: str = "CHEST", view: str = "PA") -> Path:
    """A CR of the chest (two dark lungs in a bright mediastinum and ribs): a radiograph class the SCP stores, which
    the screening rule (CHEST) or the intended-use gate (no body part: the pixels) refuses; empty strings leave the
    elements out, as many X-ray units do."""
    ds = Dataset()
    _identity(ds, "chest")
    ds.Modality = "CR"
    if body_part:
        ds.BodyPartExamined = body_part
    if view:
        ds.ViewPosition = view
    _pixels(ds, 600, 500)
    yy, xx = np.mgrid[0:600, 0:500]
    image = np.full((600, 500), 2600.0)
    for cx in (150, 350):  # lungs
        image[((xx - cx) / 95.0) ** 2 + ((yy - 300) / 220.0) ** 2 < 1] = 700.0
    image += 500.0 * (np.sin(yy / 18.0) > 0.85)  # ribs
    ds.PixelData = np.clip(image, 0, 4095).astype(np.uint16).tobytes()
    return _file(path, ds, CR_CLASS)


def write_corrupt_dx(path: Path, template: Dataset) -> Path:
    """A DX whose pixel data is a tenth of what its rows and columns need: decodes as DICOM, cannot be read."""
    ds = template.copy()
    ds.file_meta = template.file_meta.copy()
    _identity(ds, "corrupt")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PixelData = bytes(len(template.PixelData) // 10)
    ds.save_as(path, enforce_file_format=True)
    return path


ROWS_US = b"\x28\x00\x10\x00US\x02\x00"  # Rows (0028,0010), VR US, 2 bytes: explicit VR little endian
ROWS_FD = b"\x28\x00\x10\x00FD\x02\x00"  # the same 2 bytes claimed to be a float64
MODALITY_CS = b"\x08\x00\x60\x00CS"


def write_damaged(folder: Path, template: Dataset, *, tag: str = "damaged") -> dict[str, Path]:
    """Phantom DX files whose header is damaged where pydicom decodes lazily, each its own study:

    - ``rows_fd``: Rows with VR FD; dcmtk's storescu sends it as it is.
    - ``vr_xx``: Modality with the unknown VR XX (2-byte length, as pydicom reads it); dcmtk cannot read this
      one, so it goes by :func:`send_raw`, which sends the file's bytes untouched.
    - ``vr_xx_dcmtk``: Modality with VR XX and the 4-byte length dcmtk assumes for an unknown VR; storescu reads it
      and sends the element with the VR its dictionary knows (CS), so the node gets a sound header.
    """
    written = {}
    for name in ("rows_fd", "vr_xx", "vr_xx_dcmtk"):
        (study,) = write_studies(folder / name, 1, template, tag=f"{tag}-{name}")
        data = study.path.read_bytes()
        if name == "rows_fd":
            assert data.count(ROWS_US) == 1
            data = data.replace(ROWS_US, ROWS_FD)
        elif name == "vr_xx":
            data = data.replace(MODALITY_CS, b"\x08\x00\x60\x00XX", 1)
        else:
            at = data.index(MODALITY_CS)
            length = int.from_bytes(data[at + 6 : at + 8], "little")
            value = data[at + 8 : at + 8 + length]
            element = b"\x08\x00\x60\x00XX\x00\x00" + length.to_bytes(4, "little") + value
            data = data[:at] + element + data[at + 8 + length :]
        study.path.write_bytes(data)
        written[name] = study.path
    return written


def send_raw(port: int, path: Path, *, calling: str = MODALITY_AET, called: str = NODE_AET) -> int:
    """C-STORE one file's data set byte for byte, as read from disk (pynetdicom's chunked send, which does not
    decode it); returns the status the node answered."""
    import pydicom
    from pynetdicom import AE, _config

    meta = pydicom.filereader.read_file_meta_info(path)
    ae = AE(ae_title=calling)
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)  # the file's own, unconverted
    before, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        assert assoc.is_established, "the node did not accept the association"
        try:
            status = assoc.send_c_store(path)
        finally:
            assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = before
    return int(status.Status)


def storescu(
    port: int, files: Sequence[Path], *, calling: str = MODALITY_AET, called: str = NODE_AET, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    command = [tool("storescu"), "-nh", "-v", "-aet", calling, "-aec", called, "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def storescu_async(port: int, files: Sequence[Path], *, calling: str = MODALITY_AET) -> subprocess.Popen[str]:
    command = [
        tool("storescu"),
        "-nh",
        "-v",
        "-aet",
        calling,
        "-aec",
        NODE_AET,
        "127.0.0.1",
        str(port),
        *map(str, files),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_until(condition: Callable[[], Any], timeout: float, what: str, *, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- the destination PACS --------------------------------------------------------------------------------------


TALLY_LUA = """
function ReceivedInstanceFilter(dicom, origin, info)
   local f = io.open("{tally}", "a")
   f:write(dicom.SOPInstanceUID .. "\\n")
   f:close()
   return true
end
"""


class Pacs:
    """A real Orthanc that keeps its ports and storage across stop() / start(), and writes every C-STORE it
    receives (duplicates included, through a Lua ReceivedInstanceFilter) to a tally file."""

    def __init__(self, folder: Path) -> None:
        tool("Orthanc")
        self.folder = folder
        self.http_port, self.dicom_port = free_port(), free_port()
        self.aet = "OLVFPACS"
        self.tally_path = folder / "tally.txt"
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        config = _config(folder, self.http_port, self.dicom_port)
        config["DicomModalities"]["olvfnode"] = [NODE_AET, "127.0.0.1", free_port()]
        lua = folder / "tally.lua"
        lua.write_text(TALLY_LUA.replace("{tally}", str(self.tally_path)))
        config["LuaScripts"] = [str(lua)]
        self.config_path = folder / "config.json"
        self.config_path.write_text(json.dumps(config, indent=2))

    @property
    def destination(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    def start(self) -> None:
        log = (self.folder / "orthanc.log").open("ab")
        self.process = subprocess.Popen(
            [tool("Orthanc"), str(self.config_path)], cwd=self.folder, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not start within 60 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            return json.load(response)

    def file(self, instance_id: str) -> bytes:
        """The DICOM file Orthanc stored for one of its instance IDs."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/instances/{instance_id}/file", timeout=30) as r:
            return r.read()

    def instances_of(self, study_uid: str) -> list[Any]:
        """Every stored instance of a study, parsed with pydicom."""
        import io

        import pydicom

        found = [s for s in self.get("/studies?expand") if s["MainDicomTags"]["StudyInstanceUID"] == study_uid]
        assert len(found) == 1, f"{len(found)} studies with that UID in Orthanc"
        return [
            pydicom.dcmread(io.BytesIO(self.file(i["ID"]))) for i in self.get(f"/studies/{found[0]['ID']}/instances")
        ]

    def tally(self) -> Counter[str]:
        """How many times each SOP Instance UID was received by C-STORE."""
        if not self.tally_path.exists():
            return Counter()
        return Counter(line.strip() for line in self.tally_path.read_text().splitlines() if line.strip())

    def study(self, study_uid: str) -> dict[str, Any]:
        """The study's patient ID and its instances' (SOP Class, SOP Instance UID) as Orthanc filed them."""
        found = [s for s in self.get("/studies?expand") if s["MainDicomTags"]["StudyInstanceUID"] == study_uid]
        assert len(found) == 1, f"{len(found)} studies with that UID in Orthanc"
        study = found[0]
        instances = self.get(f"/studies/{study['ID']}/instances")
        return {
            "patient_id": study["PatientMainDicomTags"]["PatientID"],
            "sop_uids": sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in instances),
            "modalities": sorted(self.get(f"/series/{s}")["MainDicomTags"]["Modality"] for s in study["Series"]),
        }


# --- the node ----------------------------------------------------------------------------------------------------


class Serve:
    """``olvf-serve`` in its own process, its stderr (the log) in a file."""

    def __init__(self, folder: Path, bundle: Path, destination: str, *, extra: Sequence[str] = ()) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.spool = folder / "spool"
        self.port = free_port()
        self.log_path = folder / "serve.log"
        self.args = [
            "--bundle",
            str(bundle),
            "--spool",
            str(self.spool),
            "--ae-title",
            NODE_AET,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--send-to",
            destination,
            "--allow",
            f"{MODALITY_AET}@127.0.0.1",
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 120) -> None:
        marker = "node: listening as"
        before = self.log.count(marker)
        with self.log_path.open("ab") as log:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self.process = subprocess.Popen(
                [sys.executable, "-m", "olvf.runtime.node", *self.args], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self.starts += 1
        wait_until(lambda: self.log.count(marker) > before or self.process.poll() is not None, timeout, "olvf-serve")
        if self.process.poll() is not None:
            raise AssertionError(f"olvf-serve exited with {self.process.returncode}:\n{self.log[-3000:]}")

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 120) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def records(self) -> list[dict[str, Any]]:
        found = []
        for path in (self.spool / "ledger").glob("*.json"):
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return found

    def states(self) -> Counter[str]:
        return Counter(str(r.get("state")) for r in self.records())

    def status(self) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "olvf.runtime.node", "status", "--spool", str(self.spool), "--json", "--last", "50"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(done.stdout)
