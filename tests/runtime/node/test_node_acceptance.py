"""olvf-serve against real peers: dcmtk's storescu as the modality, a real Orthanc as the PACS, the node in
its own process with the tiny cascade bundle. Skips, naming the Debian package, where a peer is missing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from node_peers import (
    ID_PREFIX,
    IDENTITY_STRINGS,
    MODALITY_AET,
    Pacs,
    Serve,
    phantom_template,
    send_raw,
    storescu,
    storescu_async,
    wait_until,
    write_chest_cr,
    write_corrupt_dx,
    write_ct,
    write_damaged,
    write_sr,
    write_studies,
)
from peers import tool

from olvf.runtime.node.spool import instance_key
from olvf.runtime.writers.dicom_uids import SC_INSTANCE, SR_INSTANCE, derived_uid

BURST = 20


@pytest.fixture(scope="module")
def template():
    return phantom_template()


@pytest.fixture(scope="module")
def burst(tmp_path_factory, template):
    return write_studies(tmp_path_factory.mktemp("studies"), BURST, template)


@pytest.fixture
def pacs(tmp_path):
    pacs = Pacs(tmp_path / "pacs")
    pacs.start()
    yield pacs
    pacs.stop()


@pytest.fixture
def serve_factory(tmp_path, cascade_bundle):
    started: list[Serve] = []

    def make(pacs: Pacs, *extra: str, name: str = "node") -> Serve:
        node = Serve(tmp_path / name, cascade_bundle, pacs.destination, extra=extra)
        started.append(node)
        return node

    yield make
    for node in started:
        if node.process is not None and node.process.poll() is None:
            node.kill()


def bundle_sha(bundle: Path) -> str:
    import hashlib

    return hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()


def expected_results(studies, sha: str) -> dict[str, tuple[str, str]]:
    """Per source SOP Instance UID, the SC and SR UIDs the node must deliver (derived, as the writers derive them)."""
    return {
        s.sop_uid: (derived_uid(s.sop_uid, sha, SC_INSTANCE), derived_uid(s.sop_uid, sha, SR_INSTANCE)) for s in studies
    }


def send_concurrently(port: int, files, streams: int = 4) -> list:
    """Like several modalities at once: ``streams`` storescu processes, each one association."""
    chunks = [files[i::streams] for i in range(streams)]
    processes = [storescu_async(port, chunk) for chunk in chunks if chunk]
    outcomes = []
    for process in processes:
        output = process.communicate(timeout=300)[0]
        outcomes.append((process.returncode, output))
    return outcomes


def assert_delivered_once(pacs: Pacs, studies, sha: str) -> None:
    tally = pacs.tally()
    for study in studies:
        sc, sr = expected_results([study], sha)[study.sop_uid]
        assert tally[sc] == 1 and tally[sr] == 1, f"SC received {tally[sc]}x, SR {tally[sr]}x"
        filed = pacs.study(study.study_uid)
        assert filed["patient_id"] == study.patient_id
        assert filed["sop_uids"] == sorted([sc, sr])
        assert filed["modalities"] == ["OT", "SR"]


def assert_not_assessed_in_pacs(pacs: Pacs, source: Path) -> None:
    """The source's study in the PACS holds olvf's SC and SR, both saying NOT ASSESSED, and no finding."""
    import pydicom

    study_uid = pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID
    results = [ds for ds in pacs.instances_of(study_uid) if ds.Modality in ("OT", "SR")]
    assert sorted(ds.Modality for ds in results) == ["OT", "SR"], "one SC and one SR came back"
    (sc,) = [ds for ds in results if ds.Modality == "OT"]
    (sr,) = [ds for ds in results if ds.Modality == "SR"]
    assert "NOT ASSESSED" in sc.SeriesDescription and "NOT ASSESSED, no verdict" in sc.ImageComments
    assert "NOT ASSESSED" in sr.SeriesDescription
    text = "\n".join(str(e.value) for e in sr.iterall() if e.keyword in ("TextValue", "CodeMeaning"))
    assert "Not assessed: outside the intended use" in text and "Fresh osteoporotic vertebral fracture" not in text
    assert "Probability of" not in text, "no finding, no probability"


def assert_no_identity(text: str) -> None:
    for needle in IDENTITY_STRINGS:
        assert needle not in text, f"{needle!r} reached the log"


def test_burst_with_a_ct_an_sr_and_a_corrupt_file(tmp_path, pacs, serve_factory, burst, template, cascade_bundle):
    tool("storescu")
    sha = bundle_sha(cascade_bundle)
    node = serve_factory(pacs, "--batch", "8")  # as on a GPU: studies that arrive together share one call
    node.start()
    others = tmp_path / "others"
    others.mkdir()
    ct, sr, chest = write_ct(others / "ct.dcm"), write_sr(others / "sr.dcm"), write_chest_cr(others / "chest.dcm")
    corrupt = write_corrupt_dx(others / "corrupt.dcm", template)
    truncated = others / "truncated.dcm"
    truncated.write_bytes(burst[0].path.read_bytes()[:4000])

    # One study alone first, then the burst from four senders at once with the odd files mixed in.
    assert storescu(node.port, [burst[0].path]).returncode == 0
    files = [s.path for s in burst[1:]]
    files[3:3] = [ct]
    files[9:9] = [sr, corrupt]
    files[14:14] = [chest]
    outcomes = send_concurrently(node.port, files)
    lone = storescu(node.port, [truncated])

    wait_until(lambda: node.states()["sent"] == BURST + 1, 240, "20 results and the chest's stored in Orthanc")
    assert_delivered_once(pacs, burst, sha)
    status = node.status()
    states = node.states()
    assert states == {"sent": BURST + 1, "refused": 2, "failed": 1}, states
    by_reason = {r["reason"] for r in node.records() if r["state"] in ("refused", "ignored", "failed")}
    assert any("CT Image Storage is not a radiograph storage class" in r for r in by_reason)
    assert any("Basic Text SR Storage is not a radiograph storage class" in r for r in by_reason)
    # The chest CR was answered: a result that says it was not assessed, and no finding.
    (chest_record,) = [r for r in node.records() if r.get("assessed") is False]
    assert "Body Part Examined (0018,0015) is CHEST" in chest_record["not_assessed"]
    assert chest_record["mri_recommended"] is None and chest_record["vertebrae"] == 0
    assert_not_assessed_in_pacs(pacs, chest)
    assert any("pixel" in r.lower() for r in by_reason), by_reason
    # The CT and the SR were told "SOP class not supported" (storescu -nh goes on, as a modality would).
    output = "\n".join(text for _, text in outcomes)
    assert output.count("Refused: SOPClassNotSupported") == 2, output
    assert output.count("Received Store Response (Success)") == BURST - 1 + 2  # 19 studies, the chest CR, corrupt
    # The truncated file never left the modality: dcmtk itself refuses to send a file cut short.
    assert "Bad DICOM file" in lone.stderr and "premature end of stream" in lone.stderr
    assert status["queue"] == {"waiting_to_screen": 0, "waiting_to_send": 0, "dead_letter": 0, "failed": 1}
    assert status["time_to_result_s"]["studies"] == BURST + 1  # the chest's not-assessed result is a result too
    # Studies that arrived together were screened together; the one alone was not made to wait for a batch.
    batches = [r["batch"] for r in node.records() if r["state"] == "sent"]
    assert max(batches) > 1
    first = next(r for r in node.records() if r.get("study") and r["state"] == "sent" and r["batch"] == 1)
    assert first["screened_at"] - first["received_at"] < 30

    # The modality sends one again (a retry after a lost association): acknowledged, no second result.
    assert storescu(node.port, [burst[5].path]).returncode == 0
    time.sleep(2)
    assert_delivered_once(pacs, burst, sha)
    assert "duplicate" in node.log

    assert node.terminate() == 0
    log = node.log
    assert "node: stopped" in log
    assert_no_identity(log)
    for line in log.splitlines():
        assert not any(s.sop_uid in line or s.study_uid in line for s in burst), line


@pytest.mark.slow
def test_damaged_headers_cost_only_themselves_and_the_study_behind_them_gets_its_results(
    tmp_path, pacs, serve_factory, cascade_bundle
):
    """F1 of #27: Rows as FD, Modality as VR XX. Refused at receipt; one an older node acknowledged and left in
    its inbox is set aside with one line at start; the good study sent after them gets its SC and SR."""
    import os

    import pydicom

    tool("storescu")
    sha = bundle_sha(cascade_bundle)
    template = phantom_template()  # a template of its own (see the demo-node test)
    sent = write_damaged(tmp_path / "sent", template)
    left = write_damaged(tmp_path / "left", template, tag="left")["rows_fd"]
    (good,) = write_studies(tmp_path / "good", 1, template, tag="after-damaged")
    node = serve_factory(pacs)
    left_key = instance_key(str(pydicom.dcmread(left, stop_before_pixels=True).SOPInstanceUID), sha)
    inbox = node.spool / "inbox"
    inbox.mkdir(parents=True)
    (inbox / f"{left_key}.dcm").write_bytes(left.read_bytes())
    os.utime(inbox / f"{left_key}.dcm", (1e9, 1e9))  # the oldest waiting: screened first
    node.start()

    rows_fd = storescu(node.port, [sent["rows_fd"]])
    assert "Received Store Response (Error: CannotUnderstand)" in rows_fd.stdout + rows_fd.stderr
    assert send_raw(node.port, sent["vr_xx"]) == 0xC210
    assert storescu(node.port, [good.path]).returncode == 0
    wait_until(lambda: node.states()["sent"] == 1, 120, "the good study's SC and SR stored in Orthanc")
    assert_delivered_once(pacs, [good], sha)
    assert node.states() == {"sent": 1, "refused": 2, "failed": 1}, node.states()
    log = node.log
    refused = [line for line in log.splitlines() if "refused: status 0xC210 cannot understand" in line]
    assert len(refused) == 2 and "Rows (0028,0010) with VR FD" in refused[0] and "VR XX" in refused[1], refused
    (failed,) = [line for line in log.splitlines() if f"study {left_key[:16]} failed:" in line]
    assert "Rows cannot be decoded (BytesLengthException)" in failed and str(node.spool) not in failed
    assert "screening stopped" not in log and "Traceback" not in log
    status = node.status()
    assert status["queue"]["failed"] == 1 and status["queue"]["waiting_to_screen"] == 0
    (named,) = status["failed"]
    assert named["file"] == f"failed/{left_key}.dcm" and "Rows cannot be decoded" in named["reason"]
    assert_no_identity(log)
    assert node.terminate() == 0


def test_identity_values_too_long_for_their_vr_are_cut_and_the_results_are_stored(tmp_path, pacs, serve_factory):
    """F8 of #27: a 10,000-character Patient ID was copied into the SC and SR, Orthanc refused them (0xA700) and the
    node retried for two hours. Now the results carry it cut to LO's 64 characters, are stored at once, and the log
    names the attribute, never its value."""
    template = phantom_template()
    (study,) = write_studies(tmp_path / "long", 1, template, tag="long-identity")
    import pydicom

    ds = pydicom.dcmread(study.path)
    long_id = ID_PREFIX + "7" * 10_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom: the value is longer than LO allows, on purpose
        ds.PatientID = long_id
        ds.save_as(study.path, enforce_file_format=True)
    node = serve_factory(pacs)
    node.start()
    assert storescu(node.port, [study.path]).returncode == 0
    wait_until(lambda: node.states()["sent"] == 1, 120, "the SC and SR stored in Orthanc")
    (stored,) = pacs.get("/studies")
    assert pacs.get(f"/studies/{stored}")["PatientMainDicomTags"]["PatientID"] == long_id[:64]
    assert sorted(
        pacs.get(f"/series/{s}")["MainDicomTags"]["Modality"] for s in pacs.get(f"/studies/{stored}")["Series"]
    ) == ["OT", "SR"]
    (cut,) = [line for line in node.log.splitlines() if "identity cut" in line]
    assert "PatientID longer than the VR allows in the source: cut to that length in the SC and SR" in cut
    assert_no_identity(node.log)
    assert node.terminate() == 0


def test_an_unknown_calling_ae_title_is_rejected(pacs, serve_factory, burst):
    node = serve_factory(pacs)
    node.start()
    done = storescu(node.port, [burst[0].path], calling="INTRUDER")
    assert done.returncode != 0
    assert "rejected" in node.log and "INTRUDER" in node.log
    echo = subprocess.run(
        [tool("echoscu"), "-aet", MODALITY_AET, "-aec", "OLVFNODE", "127.0.0.1", str(node.port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert echo.returncode == 0, echo.stdout + echo.stderr
    assert node.states() == {}
    node.terminate()


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_burst_loses_and_duplicates_nothing(pacs, serve_factory, burst, cascade_bundle):
    sha = bundle_sha(cascade_bundle)
    node = serve_factory(pacs)
    node.start()
    first = storescu_async(node.port, [s.path for s in burst[:10]])
    wait_until(lambda: node.states()["sent"] >= 2, 180, "the first results")
    # The second half arrives while the first is being screened and sent; the kill comes as soon as its first
    # instance is on disk, so the node dies receiving, screening and sending at once.
    second = storescu_async(node.port, [s.path for s in burst[10:]])
    marker = node.spool / "inbox" / f"{instance_key(burst[10].sop_uid, sha)}.dcm"
    wait_until(marker.exists, 120, "the second half to start arriving", every=0.01)
    node.kill()
    for process in (first, second):
        process.communicate(timeout=120)
    assert node.states()["sent"] < BURST, "the burst was over before the kill; nothing was tested"
    node.start()
    # The modality sends the whole burst again: it cannot know which stores the dead node answered.
    send_concurrently(node.port, [s.path for s in burst], streams=2)
    wait_until(lambda: node.states()["sent"] == BURST, 240, "all 20 results after the restart")
    assert node.states() == {"sent": BURST}
    tally = pacs.tally()
    expected = expected_results(burst, sha)
    for study in burst:
        filed = pacs.study(study.study_uid)
        assert filed["sop_uids"] == sorted(expected[study.sop_uid]) and filed["patient_id"] == study.patient_id
    # A store whose success answer came in the milliseconds before the kill, but whose mark was not yet on
    # disk, is sent again with the same UIDs (Orthanc keeps one copy): at most one such object per kill.
    repeats = sum(n - 1 for uid, n in tally.items() if uid in {u for pair in expected.values() for u in pair})
    assert repeats <= 1, tally
    assert_no_identity(node.log)
    assert node.terminate() == 0


@pytest.mark.slow
def test_results_wait_for_a_pacs_that_is_down_and_arrive_when_it_is_back(pacs, serve_factory, burst, cascade_bundle):
    sha = bundle_sha(cascade_bundle)
    node = serve_factory(pacs, "--retry-first-s", "0.5", "--retry-max-s", "2", "--max-attempts", "1000")
    node.start()
    assert storescu(node.port, [s.path for s in burst[:4]]).returncode == 0
    wait_until(lambda: node.states()["sent"] == 4, 120, "the first four results")
    pacs.stop()
    assert storescu(node.port, [s.path for s in burst[4:12]]).returncode == 0
    wait_until(lambda: node.status()["queue"]["waiting_to_send"] == 8, 120, "eight results waiting to be sent")
    status = node.status()
    assert status["node"]["destination_down_since"] is not None
    assert any("unreachable" in (e["error"]) for e in status["errors"])
    time.sleep(3)  # several attempts while it is down
    assert node.states()["sent"] == 4
    pacs.start()
    wait_until(lambda: node.states()["sent"] == 12, 120, "the waiting results once Orthanc is back")
    assert_delivered_once(pacs, burst[:12], sha)
    assert "answers again" in node.log
    # On the CPU the node screens one study per call, however many wait (the auto batch).
    assert {r["batch"] for r in node.records()} == {1}
    assert node.terminate() == 0


@pytest.mark.slow
def test_a_burst_into_a_small_spool_with_the_pacs_down_drains_once_it_is_back(
    tmp_path, pacs, serve_factory, cascade_bundle
):
    """F2 of #27: received instances once filled a small spool and left no room for their results, so nothing
    was screened, sent or ever left. Now each waiting instance holds room for its results and the rest is refused
    (0xA700); whatever was accepted is screened while the PACS is down and stored once it is back."""
    sha = bundle_sha(cascade_bundle)
    studies = write_studies(tmp_path / "small", 10, phantom_template(size=(1000, 800)), tag="small-spool")
    pacs.stop()
    node = serve_factory(pacs, "--spool-limit-mb", "12", "--retry-first-s", "0.5", "--retry-max-s", "1")
    node.start()
    storescu(node.port, [s.path for s in studies])
    keys = {s.sop_uid: instance_key(s.sop_uid, sha) for s in studies}
    refused = [line for line in node.log.splitlines() if "status 0xA700 out of resources: the spool has" in line]
    assert refused, "the burst fitted: nothing was tested"
    assert "MiB for the results of" in refused[0] and "this instance needs" in refused[0]
    # With the PACS still down, every accepted instance is screened: its results had their room.
    wait_until(lambda: node.status()["queue"]["waiting_to_screen"] == 0, 120, "every accepted instance screened")
    waiting = node.status()["queue"]["waiting_to_send"]
    assert waiting >= 1 and node.states()["sent"] == 0
    pacs.start()
    wait_until(lambda: node.states()["sent"] == waiting, 120, "the waiting results once Orthanc is back")

    def drained() -> bool:
        queue = node.status()["queue"]
        return queue["waiting_to_screen"] + queue["waiting_to_send"] == 0

    # The modality sends the refused ones again until all are in: the spool drains each time.
    for _ in studies:
        states = {r["key"]: r.get("state") for r in node.records()}
        missing = [s for s in studies if states.get(keys[s.sop_uid]) != "sent"]
        if not missing:
            break
        storescu(node.port, [s.path for s in missing])
        wait_until(drained, 120, "the spool to drain")
    assert node.states() == {"sent": len(studies)}
    assert_delivered_once(pacs, studies, sha)
    assert node.terminate() == 0


def test_past_the_retry_limit_results_go_to_dead_letter_with_the_reason(pacs, serve_factory, burst, cascade_bundle):
    pacs.stop()
    node = serve_factory(pacs, "--retry-first-s", "0.2", "--retry-max-s", "0.5", "--max-attempts", "3")
    node.start()
    assert storescu(node.port, [s.path for s in burst[:2]]).returncode == 0
    wait_until(lambda: node.states()["dead-letter"] == 2, 120, "two results in dead-letter")
    for record in node.records():
        assert "destination unreachable" in record["reason"] and "gave up after 3 attempts" in record["reason"]
        entry = node.spool / "dead-letter" / record["key"]
        assert sorted(p.name for p in entry.iterdir()) == [
            "reason.json",
            "result.json",
            "sc.dcm",
            "send.json",
            "sr.dcm",
        ]
        assert "gave up after 3 attempts" in (entry / "reason.json").read_text()
    assert node.status()["queue"]["dead_letter"] == 2
    # The PACS is back: the operator sends the dead-lettered results again, and they arrive once.
    pacs.start()
    requeue = [sys.executable, "-m", "olvf.runtime.node", "requeue", "--spool", str(node.spool)]
    done = subprocess.run(requeue, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "2 result(s) put back in the queue to send"
    wait_until(lambda: node.states()["sent"] == 2, 60, "the requeued results")
    assert_delivered_once(pacs, burst[:2], bundle_sha(cascade_bundle))
    assert node.terminate() == 0


def test_sigterm_finishes_the_study_in_hand_and_stops(pacs, serve_factory, burst, cascade_bundle):
    node = serve_factory(pacs)
    node.start()
    assert storescu(node.port, [s.path for s in burst[:6]]).returncode == 0
    wait_until(lambda: "screened" in node.log or "sent:" in node.log, 120, "screening to start")
    node.signal(signal.SIGTERM)
    assert node.process.wait(timeout=120) == 0
    settings = node.status()["node"]
    assert settings["batch"] == 1 and "the ensemble runs on the CPU" in settings["batch_rule"]
    assert "node: stopped" in node.log
    # Nothing half-done: every instance is waiting, waiting to be sent, or sent, each exactly once.
    spool = node.spool
    assert list((spool / "tmp").iterdir()) == []
    assert not [p for p in (spool / "outbox").iterdir() if p.name.startswith(".")]
    for entry in (spool / "outbox").iterdir():
        assert {"sc.dcm", "sr.dcm", "result.json"} <= {p.name for p in entry.iterdir()}
    node.start()
    wait_until(lambda: node.states()["sent"] == 6, 120, "the rest after the restart")
    assert_delivered_once(pacs, burst[:6], bundle_sha(cascade_bundle))
    assert node.terminate() == 0


@pytest.mark.slow
def test_the_demo_node_answers_films_it_was_not_made_for_with_not_assessed_never_findings(tmp_path, pacs, demo_bundle):
    """The same gate as olvf-infer, through dcmtk and a real Orthanc: a CR chest without Body Part or View (many X-ray
    units leave them empty) and a phantom relabelled Modality CT get a result that says NOT ASSESSED and holds no
    finding; the phantom itself gets its findings."""
    tool("storescu")
    # A template of its own: the module's is shared with the corrupt-file test, whose shallow copy cuts its pixels.
    good, relabel = write_studies(tmp_path / "films", 2, phantom_template(), tag="gate")
    node = Serve(tmp_path / "node", demo_bundle, pacs.destination)
    node.start()
    try:
        _answer_films_not_for_the_bundle(node, pacs, good, relabel, tmp_path)
    finally:
        if node.process is not None and node.process.poll() is None:
            node.kill()


def _answer_films_not_for_the_bundle(node, pacs, good, relabel, tmp_path) -> None:
    import pydicom

    ds = pydicom.dcmread(relabel.path)
    ds.Modality = "CT"
    ds.save_as(relabel.path)
    chest = write_chest_cr(tmp_path / "chest.dcm", body_part="", view="")
    assert storescu(node.port, [good.path, relabel.path, chest]).returncode == 0
    wait_until(lambda: node.states()["sent"] == 3, 240, "three results stored in Orthanc")
    records = {r["study"]: r for r in node.records()}
    assert len(records) == 3 and sum(r["assessed"] is False for r in records.values()) == 2
    reasons = sorted(r["not_assessed"] for r in records.values() if r["assessed"] is False)
    assert any("Modality (0008,0060) is CT" in r for r in reasons), reasons
    assert any("vertebral bod" in r or "domain" in r for r in reasons), reasons  # the chest: the pixels decided
    assert_not_assessed_in_pacs(pacs, relabel.path)
    assert_not_assessed_in_pacs(pacs, chest)
    sr = next(d for d in pacs.instances_of(good.study_uid) if d.Modality == "SR")
    meanings = [str(e.value) for e in sr.iterall() if e.keyword == "CodeMeaning"]
    assert "Probability of fresh osteoporotic vertebral fracture" in meanings, "the phantom got its findings"
    assert_no_identity(node.log)
