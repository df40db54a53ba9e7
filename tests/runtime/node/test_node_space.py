"""The spool's space budget: the reserve per waiting instance bounds its results, and the SCP's check uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dicom_fixtures import findings_for, overlay_rgb, write_source

from olvf.runtime.node.space import MIB, SpaceBudget, results_reserve
from olvf.runtime.node.spool import Spool
from olvf.runtime.writers import read_dicom_source
from olvf.runtime.writers.dicom_results import encode_dicom_results


def test_the_reserve_bounds_the_results_even_of_a_picture_rle_cannot_compress(tmp_path: Path) -> None:
    source, phantom = write_source(tmp_path / "source.dcm", size=(600, 480))
    findings = findings_for(phantom)
    dicom = read_dicom_source(source)
    rows, columns = dicom.size
    noise = np.random.default_rng(0).integers(0, 256, (rows, columns, 3), dtype=np.uint8)  # RLE's worst case
    for overlay in (overlay_rgb(source, findings), noise):
        sc, sr, _ = encode_dicom_results(dicom, overlay, findings)
        assert len(sc) + len(sr) + 4096 <= results_reserve(rows, columns)


def _spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool")
    spool.create()
    return spool


def test_an_instance_is_admitted_only_where_it_and_the_results_of_all_waiting_fit(tmp_path: Path) -> None:
    source, _ = write_source(tmp_path / "source.dcm", size=(600, 480))
    data = source.read_bytes()
    spool = _spool(tmp_path)
    per_study = len(data) + results_reserve(600, 480)
    budget = SpaceBudget(spool, limit_bytes=int(2.5 * per_study))
    for i in range(2):
        with budget.admit(f"k{i}", len(data), 600, 480) as refusal:
            assert refusal is None
            spool.receive(f"k{i}", data, i + 1)
    with budget.admit("k2", len(data), 600, 480) as refusal:
        assert refusal is not None and "results of 2 waiting" in refusal
        assert "MiB free" in refusal and str(tmp_path) not in refusal
    # One screened (its inbox entry gone, its results in the outbox): there is room again.
    (spool.inbox / "k0.dcm").unlink()
    with budget.admit("k2", len(data), 600, 480) as refusal:
        assert refusal is None


def test_waiting_instances_from_before_a_restart_keep_their_reserve(tmp_path: Path) -> None:
    source, _ = write_source(tmp_path / "source.dcm", size=(600, 480))
    spool = _spool(tmp_path)
    spool.receive("old", source.read_bytes(), 1)  # received by the node before this one started
    held, waiting = SpaceBudget(spool).reserved()
    assert waiting == 1 and held == results_reserve(600, 480)
    assert SpaceBudget(spool, limit_bytes=64 * MIB).free() <= 64 * MIB
