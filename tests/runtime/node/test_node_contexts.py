"""What the sender proposes and sends: the SC as written (RLE Lossless) where the PACS takes it, decompressed,
losslessly and under the same SOP Instance UID, where it takes only uncompressed images."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from olvf.runtime.node.sender import (
    RESULT_CONTEXTS,
    SECONDARY_CAPTURE,
    STRUCTURED_REPORT,
    as_accepted,
)


def _rle_sc() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SECONDARY_CAPTURE, generate_uid()
    pixels = np.random.default_rng(3).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 32, 40, 3, "RGB"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.PlanarConfiguration = 8, 8, 7, 0, 0
    ds.PixelData = pixels.tobytes()
    ds.compress(RLELossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    return ds


def _assoc(*accepted: tuple[str, str]) -> SimpleNamespace:
    return SimpleNamespace(
        accepted_contexts=[SimpleNamespace(abstract_syntax=s, transfer_syntax=[t]) for s, t in accepted]
    )


def test_the_sender_proposes_the_sc_as_written_and_uncompressed_and_the_comprehensive_3d_sr() -> None:
    assert (SECONDARY_CAPTURE, (RLELossless,)) in RESULT_CONTEXTS
    assert any(s == SECONDARY_CAPTURE and ExplicitVRLittleEndian in t for s, t in RESULT_CONTEXTS)
    assert STRUCTURED_REPORT == "1.2.840.10008.5.1.4.1.1.88.34"
    assert {s for s, _ in RESULT_CONTEXTS} == {SECONDARY_CAPTURE, STRUCTURED_REPORT}


def test_an_rle_sc_goes_as_written_where_rle_was_accepted() -> None:
    sc = _rle_sc()
    sent = as_accepted(_assoc((SECONDARY_CAPTURE, RLELossless), (SECONDARY_CAPTURE, ExplicitVRLittleEndian)), sc)
    assert sent.file_meta.TransferSyntaxUID == RLELossless


def test_an_rle_sc_is_decompressed_losslessly_where_only_uncompressed_was_accepted() -> None:
    sc = _rle_sc()
    uid, pixels = sc.SOPInstanceUID, sc.pixel_array.copy()
    sent = as_accepted(_assoc((SECONDARY_CAPTURE, ExplicitVRLittleEndian)), sc)
    assert sent.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and sent.SOPInstanceUID == uid
    np.testing.assert_array_equal(sent.pixel_array, pixels)


@pytest.mark.parametrize("accepted", [(), ((STRUCTURED_REPORT, ExplicitVRLittleEndian),)])
def test_where_no_context_takes_the_class_it_is_left_to_the_store_to_refuse(accepted) -> None:
    sc = _rle_sc()
    assert as_accepted(_assoc(*accepted), sc).file_meta.TransferSyntaxUID == RLELossless
