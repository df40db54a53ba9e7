"""The radiograph reader: what a clinician's file becomes before the models see it.

Two kinds of fixtures, nothing downloaded: pydicom's bundled test files (one
reference table across transfer syntaxes, parametrised; a file missing from
the installed wheel is skipped by name, never fetched) and DICOMs, PNGs, JPEGs
and TIFFs made here with known content, so each display rule can be checked
against the DICOM formula it implements.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    generate_uid,
)

from olvf.errors import InputError
from olvf.runtime.bundle.config import DisplayConversion
from olvf.runtime.inputs.images import Radiograph
from olvf.runtime.inputs.reader import read_radiograph

DX_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
IDENTIFIERS = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-31415",
    "PatientBirthDate": "19400101",
    "AccessionNumber": "ACC-27182",
    "InstitutionName": "St Example Hospital",
}


# --- helpers ------------------------------------------------------------------


def bundled(name: str) -> str:
    """A pydicom test file from the installed wheel; pydicom 3 fetches the others from the network."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    return str(path)


def assert_input_error(path: Path | str, *fragments: str, **kwargs: Any) -> str:
    """The read fails with one line that names the file and contains each fragment (case-insensitive)."""
    with pytest.raises(InputError) as caught:
        read_radiograph(path, **kwargs)
    message = str(caught.value)
    assert Path(path).name in message
    assert "\n" not in message and "\r" not in message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    return message


def make_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    syntax: UID = ExplicitVRLittleEndian,
    **elements: Any,
) -> Path:
    """A DX image with the given stored values (2-D, or 3-D for frames) and extra elements."""
    pixels = np.ascontiguousarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(rows: int = 96, columns: int = 128, low: int = 0, high: int = 4095, dtype: type = np.uint16) -> np.ndarray:
    """Every value from low to high, left to right, repeated down the rows."""
    line = np.linspace(low, high, columns).round()
    return np.tile(line, (rows, 1)).astype(dtype)


def linear_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 (LINEAR), scaled to [0, 1]."""
    return np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def voi_lut_item(data: list[int], bits: int, first: int = 0, entries: int | None = None) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(data) if entries is None else entries, first, bits]
    item.LUTData = data
    item["LUTData"].VR = "US"
    item.LUTExplanation = "TEST LUT"
    return item


def assert_display_image(result: Radiograph, rows: int, columns: int) -> None:
    pixels = result.pixels
    assert pixels.dtype == np.float32 and pixels.shape == (rows, columns)
    assert 0.0 <= pixels.min() < pixels.max() <= 1.0
    assert not pixels.flags.writeable


def assert_no_identifiers(result: Radiograph, values: list[str]) -> None:
    text = json.dumps(result.info.to_dict())
    for keyword in IDENTIFIERS:
        assert keyword not in text
    for value in values:
        assert value and value not in text, value


# --- pydicom's bundled files ---------------------------------------------------

# (file, transfer syntax, rows, columns, photometric as stored, bits stored, frames, window source, spacing source)
REFERENCE = [
    ("MR_small.dcm", "Explicit VR Little Endian", 64, 64, "MONOCHROME2", 16, 1, "Window Center/Width", "PixelSpacing"),
    (
        "MR_small_implicit.dcm",
        "Implicit VR Little Endian",
        64,
        64,
        "MONOCHROME2",
        16,
        1,
        "Window Center/Width",
        "PixelSpacing",
    ),
    (
        "MR_small_bigendian.dcm",
        "Explicit VR Big Endian",
        64,
        64,
        "MONOCHROME2",
        16,
        1,
        "Window Center/Width",
        "PixelSpacing",
    ),
    ("MR_small_RLE.dcm", "RLE Lossless", 64, 64, "MONOCHROME2", 16, 1, "Window Center/Width", "PixelSpacing"),
    (
        "MR_small_jp2klossless.dcm",
        "JPEG 2000 Image Compression (Lossless Only)",
        64,
        64,
        "MONOCHROME2",
        16,
        1,
        "Window Center/Width",
        "PixelSpacing",
    ),
    (
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEG-LS Lossless Image Compression",
        64,
        64,
        "MONOCHROME2",
        16,
        1,
        "Window Center/Width",
        "PixelSpacing",
    ),
    ("image_dfl.dcm", "Deflated Explicit VR Little Endian", 512, 512, "MONOCHROME2", 8, 1, "percentile fallback", None),
    (
        "CT_small.dcm",
        "Explicit VR Little Endian",
        128,
        128,
        "MONOCHROME2",
        16,
        1,
        "percentile fallback",
        "PixelSpacing",
    ),
    (
        "JPEG2000.dcm",
        "JPEG 2000 Image Compression",
        1024,
        256,
        "MONOCHROME2",
        16,
        1,
        "percentile fallback",
        "PixelSpacing",
    ),
    (
        "693_J2KI.dcm",
        "JPEG 2000 Image Compression",
        512,
        512,
        "MONOCHROME2",
        14,
        1,
        "Window Center/Width",
        "PixelSpacing",
    ),
    (
        "JPGExtended.dcm",
        "JPEG Extended (Process 2 and 4)",
        1024,
        256,
        "MONOCHROME2",
        12,
        1,
        "percentile fallback",
        "PixelSpacing",
    ),
    ("SC_rgb_rle.dcm", "RLE Lossless", 100, 100, "RGB", 8, 1, "full range", "PixelSpacing"),
    ("SC_rgb_rle_2frame.dcm", "RLE Lossless", 100, 100, "RGB", 8, 2, "full range", "PixelSpacing"),
    (
        "SC_ybr_full_422_uncompressed.dcm",
        "Explicit VR Little Endian",
        100,
        100,
        "YBR_FULL_422",
        8,
        1,
        "full range",
        "PixelSpacing",
    ),
    ("SC_rgb_jpeg_dcmtk.dcm", "JPEG Baseline (Process 1)", 100, 100, "YBR_FULL", 8, 1, "full range", "PixelSpacing"),
    ("examples_ybr_color.dcm", "JPEG Baseline (Process 1)", 240, 320, "YBR_FULL_422", 8, 30, "full range", None),
    ("SC_rgb_gdcm_KY.dcm", "JPEG 2000 Image Compression", 100, 100, "RGB", 8, 1, "full range", "PixelSpacing"),
]


@pytest.mark.parametrize("row", REFERENCE, ids=[row[0] for row in REFERENCE])
def test_bundled_file_reads_as_recorded_or_names_the_missing_codec(row: tuple) -> None:
    name, syntax, rows, columns, photometric, bits, frames, window_source, spacing_source = row
    path = bundled(name)
    ds = pydicom.dcmread(path)
    decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
    if not decoder.is_available:
        # A missing codec must say what to install, in one line.
        message = assert_input_error(path, syntax, "not installed")
        assert any(dep.split(" - ")[0] in message for dep in decoder.missing_dependencies)
        return
    if name == "JPGExtended.dcm" and decoder.available_plugins == ("pillow",):
        # Pillow decodes 8-bit JPEG only; the error must point to the decoders that read 12-bit.
        assert_input_error(path, "cannot be decoded", "pylibjpeg-libjpeg")
        return
    result = read_radiograph(path)
    info = result.info
    assert_display_image(result, rows, columns)
    assert (info.kind, info.transfer_syntax, info.photometric_interpretation) == ("dicom", syntax, photometric)
    assert (info.rows, info.columns, info.bits_stored) == (rows, columns, bits)
    assert (info.frames, info.frame_used) == (frames, 0)
    assert info.window["source"] == window_source
    assert info.spacing_source == spacing_source
    assert info.inverted is False
    assert info.sop_instance_uid == ds.SOPInstanceUID
    assert_no_identifiers(result, [str(ds.get(k, "")) for k in IDENTIFIERS if str(ds.get(k, "")).strip()])


def test_lossless_encodings_of_one_image_give_identical_pixels() -> None:
    reference = read_radiograph(bundled("MR_small.dcm")).pixels
    for name in (
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
    ):
        np.testing.assert_array_equal(read_radiograph(bundled(name)).pixels, reference, err_msg=name)


def test_signed_pixels_keep_negative_values_darkest() -> None:
    path = bundled("JPEG2000.dcm")  # signed 16-bit, 15 % of it negative
    ds = pydicom.dcmread(path)
    if not get_decoder(ds.file_meta.TransferSyntaxUID).is_available:
        pytest.skip("no JPEG 2000 decoder (pylibjpeg-openjpeg) installed")
    stored = ds.pixel_array
    assert ds.PixelRepresentation == 1 and stored.min() < 0  # the property under test needs negative values
    pixels = read_radiograph(path).pixels
    assert pixels[stored == stored.min()].max() == 0.0
    assert pixels[stored == stored.max()].min() == 1.0


def test_ybr_and_rgb_encodings_of_one_picture_give_the_same_gray() -> None:
    rgb = read_radiograph(bundled("SC_rgb_rle.dcm")).pixels
    ybr = read_radiograph(bundled("SC_ybr_full_422_uncompressed.dcm")).pixels
    # YBR_FULL_422 is 4:2:2 chroma-subsampled: 8-bit rounding of the YCbCr round trip, not more.
    assert np.abs(rgb - ybr).max() < 0.01
    # Luminance, not one channel: the picture's pure red, green and blue bars differ from their mean.
    stored = pydicom.dcmread(bundled("SC_rgb_rle.dcm")).pixel_array.astype(float)
    np.testing.assert_allclose(rgb, stored @ [0.299, 0.587, 0.114] / 255, atol=1e-6)


def test_pydicom_warnings_about_a_file_become_notes_not_stderr() -> None:
    # pytest turns warnings into errors here, so an escaping warning fails this test.
    result = read_radiograph(bundled("MR_small_padded.dcm"))
    assert any(note.startswith("pydicom:") and "padding" in note for note in result.info.notes)
    np.testing.assert_array_equal(result.pixels, read_radiograph(bundled("MR_small.dcm")).pixels)


def test_multi_frame_uses_frame_zero_and_says_so() -> None:
    result = read_radiograph(bundled("SC_rgb_rle_2frame.dcm"))
    single = read_radiograph(bundled("SC_rgb_rle.dcm"))
    np.testing.assert_array_equal(result.pixels, single.pixels)
    assert (result.info.frames, result.info.frame_used) == (2, 0)
    assert any("frame 0" in note for note in result.info.notes)


CR_FILES = sorted(get_testdata_files("dicomdirtests/77654033/CR*/*"))


@pytest.mark.skipif(not CR_FILES, reason="pydicom's MONOCHROME1 CR files are not bundled")
@pytest.mark.parametrize("path", CR_FILES, ids=[Path(p).parent.name for p in CR_FILES])
def test_monochrome1_cr_is_inverted(path: str, tmp_path: Path) -> None:
    assert_input_error(path, "too small to hold a vertebra")  # these CRs are 16x16 pixels
    m1 = read_radiograph(path, min_side=16)
    assert m1.info.photometric_interpretation == "MONOCHROME1" and m1.info.inverted is True
    assert m1.info.window["source"] == "Window Center/Width"
    assert (m1.info.spacing_source, m1.info.pixel_spacing_mm) == ("ImagerPixelSpacing", (0.1, 0.1))
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.save_as(tmp_path / "m2.dcm")
    m2 = read_radiograph(tmp_path / "m2.dcm", min_side=16)
    assert m2.info.inverted is False
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)
    kept = read_radiograph(path, DisplayConversion(invert_monochrome1=False), min_side=16)
    np.testing.assert_array_equal(kept.pixels, m2.pixels)


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("MR_truncated.dcm", ("truncated", "8130 of 8192 bytes")),
        ("test-SR.dcm", ("no pixel data", "Comprehensive SR", "modality SR", "radiograph image itself")),
        ("examples_palette.dcm", ("PALETTE COLOR",)),
        ("rtdose.dcm", ("32-bit", "RTDOSE", "8 to 16 bits")),
        ("SC_rgb_small_odd.dcm", ("3x3 pixels", "too small to hold a vertebra")),
        ("SC_rgb_rle_32bit.dcm", ("32-bit",)),
        ("ExplVR_LitEndNoMeta.dcm", ("no DICOM preamble and no pixel data",)),
    ],
)
def test_bundled_files_olvf_cannot_use_are_refused_in_one_line(name: str, fragments: tuple[str, ...]) -> None:
    assert_input_error(bundled(name), *fragments)


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEGExtended12Bit], ids=["jpeg-ls", "jpeg-12bit"])
def test_missing_codec_error_keeps_pydicoms_install_hint(syntax: UID) -> None:
    name = {JPEGLSLossless: "MR_small_jpeg_ls_lossless.dcm", JPEGExtended12Bit: "JPGExtended.dcm"}[syntax]
    if get_decoder(syntax).is_available:  # e.g. pyjpegls, which highdicom pulls in, decodes JPEG-LS
        pytest.skip(f"a {syntax.name} decoder is installed ({', '.join(get_decoder(syntax).available_plugins)})")
    assert_input_error(bundled(name), syntax.name, "pylibjpeg-libjpeg", "gdcm")


def test_jpeg_baseline_reads_when_a_decoder_is_installed_else_says_which() -> None:
    path = bundled("SC_rgb_jpeg_dcmtk.dcm")
    if not get_decoder(JPEGBaseline8Bit).is_available:
        assert_input_error(path, "JPEG Baseline", "not installed")
        return
    lossy = read_radiograph(path).pixels
    lossless = read_radiograph(bundled("SC_rgb_rle.dcm")).pixels
    assert np.abs(lossy - lossless).mean() < 0.01  # the same picture, JPEG-compressed


# --- synthetic DICOMs: the display pipeline ---------------------------------------


@pytest.mark.parametrize("window", [{}, {"WindowCenter": 2048, "WindowWidth": 2048}], ids=["no-window", "window"])
def test_monochrome1_and_monochrome2_of_the_same_values_are_inverses(tmp_path: Path, window: dict) -> None:
    stored = ramp()
    m1 = read_radiograph(make_dicom(tmp_path / "m1.dcm", stored, bits_stored=12, photometric="MONOCHROME1", **window))
    m2 = read_radiograph(make_dicom(tmp_path / "m2.dcm", stored, bits_stored=12, **window))
    assert (m1.info.inverted, m2.info.inverted) == (True, False)
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)
    assert m1.pixels[:, 0].min() == 1.0  # lowest stored value: bright, i.e. dense, in MONOCHROME1


def test_window_centre_width_follows_the_dicom_formula_and_clips(tmp_path: Path) -> None:
    stored = ramp()
    result = read_radiograph(
        make_dicom(tmp_path / "w.dcm", stored, bits_stored=12, WindowCenter=2048, WindowWidth=1024)
    )
    np.testing.assert_allclose(result.pixels, linear_window(stored.astype(float), 2048, 1024), atol=1e-6)
    assert result.pixels[stored < 1536].max() == 0.0 and result.pixels[stored > 2560].min() == 1.0
    window = result.info.window
    assert (window["source"], window["centre"], window["width"], window["function"]) == (
        "Window Center/Width",
        2048,
        1024,
        "LINEAR",
    )
    assert window["reason"] is None


def test_sigmoid_window_is_honoured(tmp_path: Path) -> None:
    stored = ramp()
    path = make_dicom(
        tmp_path / "s.dcm", stored, bits_stored=12, WindowCenter=2048, WindowWidth=1024, VOILUTFunction="SIGMOID"
    )
    result = read_radiograph(path)
    expected = 1 / (1 + np.exp(-4 * (stored.astype(float) - 2048) / 1024))
    np.testing.assert_allclose(result.pixels, expected, atol=1e-6)
    assert result.info.window["function"] == "SIGMOID"


def test_first_of_several_windows_is_used_and_noted(tmp_path: Path) -> None:
    stored = ramp()
    path = make_dicom(
        tmp_path / "multi.dcm",
        stored,
        bits_stored=12,
        WindowCenter=[1000, 3000],
        WindowWidth=[500, 800],
        WindowCenterWidthExplanation=["SOFT", "BONE"],
    )
    result = read_radiograph(path)
    np.testing.assert_allclose(result.pixels, linear_window(stored.astype(float), 1000, 500), atol=1e-6)
    window = result.info.window
    assert (window["alternatives"], window["explanation"]) == (2, "SOFT")
    assert any("2 windows" in note for note in result.info.notes)


def test_voi_lut_sequence_is_preferred_over_the_window(tmp_path: Path) -> None:
    stored = ramp()
    steps = [(i // 1024) * 21845 for i in range(4096)]  # four gray levels: 0, 1/3, 2/3, 1
    path = make_dicom(
        tmp_path / "lut.dcm",
        stored,
        bits_stored=12,
        WindowCenter=100,
        WindowWidth=10,
        VOILUTSequence=[voi_lut_item(steps, 16)],
    )
    result = read_radiograph(path)
    np.testing.assert_allclose(result.pixels, (stored // 1024) / 3, atol=1e-6)
    assert result.info.window["source"] == "VOI LUT Sequence"
    assert result.info.window["explanation"] == "TEST LUT"


def test_8bit_voi_lut_with_4096_entries_maps_every_entry(tmp_path: Path) -> None:
    # pydicom 3.0's apply_voi indexes an 8-bit LUT with uint8, so entries past 255 wrap
    # around; the reader applies VOI LUTs itself for that reason.
    stored = ramp()
    path = make_dicom(
        tmp_path / "lut8.dcm", stored, bits_stored=12, VOILUTSequence=[voi_lut_item([i // 16 for i in range(4096)], 8)]
    )
    result = read_radiograph(path)
    np.testing.assert_allclose(result.pixels, (stored // 16) / 255, atol=1e-6)
    assert np.all(np.diff(result.pixels[0]) >= 0)


def test_lut_declaring_more_bits_than_its_values_use_is_scaled_by_its_values(tmp_path: Path) -> None:
    # Some CR vendors declare the storage size (16) for 12-bit LUT values.
    stored = ramp()
    path = make_dicom(
        tmp_path / "lut12.dcm", stored, bits_stored=12, VOILUTSequence=[voi_lut_item(list(range(4096)), 16)]
    )
    result = read_radiograph(path)
    np.testing.assert_allclose(result.pixels, stored / 4095, atol=1e-6)
    assert any("declares 16 bits" in note for note in result.info.notes)


def test_voi_lut_for_signed_values_stored_as_unsigned_descriptor(tmp_path: Path) -> None:
    stored = ramp(low=-2048, high=2047, dtype=np.int16)
    item = voi_lut_item(list(range(4096)), 16, first=2**16 - 2048)  # -2048 written as US, as some writers do
    item["LUTDescriptor"].VR = "US"
    result = read_radiograph(make_dicom(tmp_path / "s.dcm", stored, bits_stored=12, VOILUTSequence=[item]))
    assert result.info.window["source"] == "VOI LUT Sequence"
    np.testing.assert_allclose(result.pixels, (stored + 2048) / 4095, atol=1e-6)


def test_malformed_voi_lut_falls_back_to_the_window_then_to_percentiles(tmp_path: Path) -> None:
    stored = ramp()
    broken = voi_lut_item(list(range(100)), 16, entries=4096)  # descriptor says 4096 entries
    with_window = read_radiograph(
        make_dicom(
            tmp_path / "a.dcm", stored, bits_stored=12, WindowCenter=2048, WindowWidth=1024, VOILUTSequence=[broken]
        )
    )
    assert with_window.info.window["source"] == "Window Center/Width"
    assert any("VOI LUT Sequence" in note and "4096 entries" in note for note in with_window.info.notes)
    alone = read_radiograph(make_dicom(tmp_path / "b.dcm", stored, bits_stored=12, VOILUTSequence=[broken]))
    assert alone.info.window["source"] == "percentile fallback"
    assert alone.info.window["reason"].startswith("malformed") and "VOI LUT Sequence" in alone.info.window["reason"]


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ({"WindowCenter": 2048, "WindowWidth": 0}, "Window Width"),
        ({"WindowCenter": 2048}, "only one of"),
        ({"WindowCenter": 100000, "WindowWidth": 10}, "maps every pixel to one value"),
    ],
    ids=["width-0", "centre-only", "outside-the-data"],
)
def test_malformed_window_falls_back_to_percentiles_and_says_why(tmp_path: Path, window: dict, reason: str) -> None:
    result = read_radiograph(make_dicom(tmp_path / "bad.dcm", ramp(), bits_stored=12, **window))
    assert result.info.window["source"] == "percentile fallback"
    assert result.info.window["reason"].startswith("malformed: Window Center/Width")
    assert reason in result.info.window["reason"]
    assert result.pixels.min() == 0.0 and result.pixels.max() == 1.0


def test_no_window_uses_the_percentiles_and_records_them(tmp_path: Path) -> None:
    stored = ramp(rows=100, columns=1000)
    result = read_radiograph(make_dicom(tmp_path / "none.dcm", stored, bits_stored=12))
    window = result.info.window
    assert (window["source"], window["reason"], window["percentiles"]) == ("percentile fallback", "absent", [0.5, 99.5])
    # On a uniform ramp 0.5 % of the pixels fall below the low percentile and 0.5 % above the high one.
    assert np.mean(result.pixels == 0.0) == pytest.approx(0.005, abs=0.002)
    assert np.mean(result.pixels == 1.0) == pytest.approx(0.005, abs=0.002)
    assert window["centre"] == pytest.approx(4095 / 2, abs=1)


def test_percentile_conversion_ignores_the_files_window(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "w.dcm", ramp(), bits_stored=12, WindowCenter=100, WindowWidth=10)
    result = read_radiograph(path, DisplayConversion(window="percentile", fallback_percentiles=(1.0, 99.0)))
    assert (result.info.window["source"], result.info.window["reason"]) == ("percentile fallback", "requested")
    assert result.info.window["percentiles"] == [1.0, 99.0]


def test_rescale_slope_and_intercept_come_before_the_window(tmp_path: Path) -> None:
    stored = ramp()
    modality = (
        stored * 2.0 - 1000.0
    )  # window given in these units; without the rescale nearly all pixels would be white
    path = make_dicom(
        tmp_path / "r.dcm",
        stored,
        bits_stored=12,
        RescaleSlope=2,
        RescaleIntercept=-1000,
        WindowCenter=3096,
        WindowWidth=2048,
    )
    result = read_radiograph(path)
    np.testing.assert_allclose(result.pixels, linear_window(modality, 3096, 2048), atol=1e-6)
    assert 0.2 < result.pixels.mean() < 0.8


def test_modality_lut_sequence_is_applied_and_a_malformed_one_refused(tmp_path: Path) -> None:
    stored = ramp()
    reverse = voi_lut_item([4095 - i for i in range(4096)], 16)  # modality values run the other way
    result = read_radiograph(make_dicom(tmp_path / "m.dcm", stored, bits_stored=12, ModalityLUTSequence=[reverse]))
    assert result.pixels[0, 0] == 1.0 and result.pixels[0, -1] == 0.0
    broken = voi_lut_item(list(range(100)), 16, entries=4096)
    assert_input_error(
        make_dicom(tmp_path / "bad.dcm", stored, bits_stored=12, ModalityLUTSequence=[broken]),
        "Modality LUT Sequence is malformed",
        "4096 entries",
    )


@pytest.mark.parametrize(
    ("bits", "dtype"),
    [(8, np.uint8), (12, np.uint16), (12, np.int16), (16, np.uint16), (16, np.int16)],
    ids=["8-unsigned", "12-unsigned", "12-signed", "16-unsigned", "16-signed"],
)
@pytest.mark.parametrize("windowed", [False, True], ids=["percentile", "window"])
def test_bit_depths_and_signedness_keep_the_order_of_stored_values(
    tmp_path: Path, bits: int, dtype: type, windowed: bool
) -> None:
    signed = np.dtype(dtype).kind == "i"
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    stored = ramp(low=low, high=high, dtype=dtype)
    window = {"WindowCenter": (low + high) / 2, "WindowWidth": high - low} if windowed else {}
    result = read_radiograph(make_dicom(tmp_path / "b.dcm", stored, bits_stored=bits, **window))
    assert result.info.bits_stored == bits
    assert result.info.window["source"] == ("Window Center/Width" if windowed else "percentile fallback")
    row = result.pixels[0]
    assert row[0] == 0.0 and row[-1] == 1.0  # the most negative stored value is the darkest
    assert np.all(np.diff(row) >= 0)


@pytest.mark.parametrize(
    ("elements", "spacing", "source", "reason"),
    [
        ({"PixelSpacing": [0.15, 0.2]}, (0.15, 0.2), "PixelSpacing", None),
        ({"ImagerPixelSpacing": [0.1, 0.1]}, (0.1, 0.1), "ImagerPixelSpacing", None),
        ({"PixelSpacing": [0.15, 0.2], "ImagerPixelSpacing": [0.1, 0.1]}, (0.15, 0.2), "PixelSpacing", None),
        ({}, None, None, "missing"),
        ({"PixelSpacing": [0.0, 0.2]}, None, None, "malformed PixelSpacing"),
    ],
    ids=["pixel", "imager", "both", "none", "malformed"],
)
def test_pixel_spacing_and_its_source_are_recorded(
    tmp_path: Path, elements: dict, spacing: Any, source: Any, reason: Any
) -> None:
    info = read_radiograph(make_dicom(tmp_path / "s.dcm", ramp(), bits_stored=12, **elements)).info
    assert (info.pixel_spacing_mm, info.spacing_source, info.spacing_reason) == (spacing, source, reason)


def test_synthetic_multi_frame_uses_frame_zero(tmp_path: Path) -> None:
    first = ramp()
    frames = np.stack([first, first[:, ::-1], first // 2])
    result = read_radiograph(
        make_dicom(tmp_path / "mf.dcm", frames, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    )
    np.testing.assert_allclose(result.pixels, linear_window(first.astype(float), 2048, 4096), atol=1e-6)
    assert (result.info.frames, result.info.frame_used) == (3, 0)


def test_implicit_vr_file_reads_like_explicit(tmp_path: Path) -> None:
    stored = ramp()
    explicit = read_radiograph(make_dicom(tmp_path / "e.dcm", stored, bits_stored=12))
    implicit = read_radiograph(make_dicom(tmp_path / "i.dcm", stored, bits_stored=12, syntax=ImplicitVRLittleEndian))
    np.testing.assert_array_equal(explicit.pixels, implicit.pixels)
    assert implicit.info.transfer_syntax == "Implicit VR Little Endian"


def test_file_without_preamble_is_read_when_it_holds_pixels(tmp_path: Path) -> None:
    stored = ramp()
    with_preamble = make_dicom(tmp_path / "full.dcm", stored, bits_stored=12)
    ds = pydicom.dcmread(with_preamble)
    bare = Dataset()
    bare.update(ds)  # the dataset alone: no preamble, no file meta
    pydicom.dcmwrite(tmp_path / "bare.dcm", bare, implicit_vr=True, little_endian=True)
    assert (tmp_path / "bare.dcm").read_bytes()[128:132] != b"DICM"
    result = read_radiograph(tmp_path / "bare.dcm")
    np.testing.assert_array_equal(result.pixels, read_radiograph(with_preamble).pixels)
    assert result.info.transfer_syntax == "Implicit VR Little Endian"
    assert any("force=True" in note for note in result.info.notes)


def test_info_never_holds_patient_identifiers(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "id.dcm", ramp(), bits_stored=12, WindowCenter=2048, WindowWidth=1024)
    assert pydicom.dcmread(path).PatientName == IDENTIFIERS["PatientName"]  # the file does carry them
    result = read_radiograph(path)
    assert_no_identifiers(result, ["Doe", *IDENTIFIERS.values()])
    json.dumps(result.info.to_dict())  # reports are JSON


# --- PNG / JPEG / TIFF --------------------------------------------------------------


def test_16bit_png_gets_the_percentile_window(tmp_path: Path) -> None:
    stored = ramp(rows=100, columns=1000)
    assert cv2.imwrite(str(tmp_path / "r.png"), stored)
    result = read_radiograph(tmp_path / "r.png")
    assert_display_image(result, 100, 1000)
    info = result.info
    assert (info.kind, info.bits_stored, info.window["source"], info.window["reason"]) == (
        "png",
        16,
        "percentile fallback",
        "absent",
    )
    assert np.mean(result.pixels == 1.0) == pytest.approx(0.005, abs=0.002)
    assert np.all(np.diff(result.pixels[0]) >= 0)


@pytest.mark.parametrize(
    ("suffix", "kind", "tolerance"), [(".tif", "tiff", 1e-6), (".png", "png", 1e-6), (".jpg", "jpeg", 3 / 255)]
)
def test_8bit_images_are_divided_by_255(tmp_path: Path, suffix: str, kind: str, tolerance: float) -> None:
    stored = ramp(high=255, dtype=np.uint8)  # smooth, so JPEG keeps it within a few levels
    assert cv2.imwrite(str(tmp_path / f"r{suffix}"), stored)
    result = read_radiograph(tmp_path / f"r{suffix}")
    np.testing.assert_allclose(result.pixels, stored / 255, atol=tolerance)
    assert (result.info.kind, result.info.bits_stored, result.info.window["source"]) == (kind, 8, "full range")


def test_colour_image_becomes_luminance_gray(tmp_path: Path) -> None:
    image = np.zeros((96, 96, 3), np.uint8)  # OpenCV order: blue, green, red
    image[:32, :, 2] = 255
    image[32:64, :, 1] = 255
    image[64:, :, 0] = 255
    assert cv2.imwrite(str(tmp_path / "c.png"), image)
    result = read_radiograph(tmp_path / "c.png")
    np.testing.assert_allclose(result.pixels[[0, 40, 80], 0], [0.299, 0.587, 0.114], atol=1e-6)
    assert result.info.photometric_interpretation == "RGB"


def test_format_comes_from_the_content_not_the_name(tmp_path: Path) -> None:
    assert cv2.imwrite(str(tmp_path / "r.png"), ramp(high=255, dtype=np.uint8))
    disguised = tmp_path / "r.dcm"
    disguised.write_bytes((tmp_path / "r.png").read_bytes())
    assert read_radiograph(disguised).info.kind == "png"


# --- errors --------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    assert_input_error(tmp_path / "absent.dcm", "no such file")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "series").mkdir()
    assert_input_error(tmp_path / "series", "folder")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.dcm").write_bytes(b"")
    assert_input_error(tmp_path / "empty.dcm", "empty")


def test_text_file(tmp_path: Path) -> None:
    (tmp_path / "notes.dcm").write_text("Patient seen in ER, lumbar pain.\n" * 20)
    assert_input_error(tmp_path / "notes.dcm", "neither DICOM nor", "PNG")


def test_truncated_pixel_data(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "cut.dcm", ramp(), bits_stored=12)
    path.write_bytes(path.read_bytes()[:-5000])
    assert_input_error(path, "truncated", "copy it again")


def test_structured_report_without_pixels(tmp_path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(tmp_path / "sr.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.PatientName = IDENTIFIERS["PatientName"]
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    message = assert_input_error(
        tmp_path / "sr.dcm", "no pixel data", "Basic Text SR", "modality SR", "radiograph image itself"
    )
    assert "Doe" not in message


def test_tiny_images(tmp_path: Path) -> None:
    assert_input_error(
        make_dicom(tmp_path / "tiny.dcm", ramp(rows=40, columns=300), bits_stored=12),
        "300x40",
        "too small to hold a vertebra",
    )
    assert cv2.imwrite(str(tmp_path / "tiny.png"), ramp(rows=300, columns=63, high=255, dtype=np.uint8))
    assert_input_error(tmp_path / "tiny.png", "too small to hold a vertebra")


def test_blank_images(tmp_path: Path) -> None:
    blank = np.full((96, 96), 1000, np.uint16)
    assert_input_error(
        make_dicom(tmp_path / "blank.dcm", blank, bits_stored=12, WindowCenter=1000, WindowWidth=100), "blank", "1000"
    )
    assert cv2.imwrite(str(tmp_path / "blank.png"), np.zeros((96, 96), np.uint8))
    assert_input_error(tmp_path / "blank.png", "blank")


def test_damaged_image(tmp_path: Path) -> None:
    assert cv2.imwrite(str(tmp_path / "r.png"), ramp(high=255, dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes((tmp_path / "r.png").read_bytes()[:40])
    assert_input_error(tmp_path / "cut.png", "cannot be decoded")


def test_unsupported_bit_depth(tmp_path: Path) -> None:
    assert_input_error(
        make_dicom(tmp_path / "b4.dcm", ramp(high=15, dtype=np.uint8), bits_stored=4), "4-bit", "8 to 16 bits"
    )


# --- the display conversion as a manifest entry ------------------------------------------


def test_display_conversion_round_trips_and_is_strict() -> None:
    conversion = DisplayConversion(window="percentile", fallback_percentiles=(1.0, 99.0), invert_monochrome1=False)
    assert DisplayConversion.from_dict(json.loads(json.dumps(conversion.to_dict()))) == conversion
    assert DisplayConversion.from_dict(DisplayConversion().to_dict()) == DisplayConversion()
    with pytest.raises(ValueError, match="exactly"):
        DisplayConversion.from_dict({**conversion.to_dict(), "gamma": 2.2})  # unknown: would convert differently
    with pytest.raises(ValueError, match="exactly"):
        DisplayConversion.from_dict({"window": "dicom"})
    with pytest.raises(ValueError, match="true or false"):
        DisplayConversion.from_dict({**conversion.to_dict(), "invert_monochrome1": "false"})
    for bad in ({"window": "auto"}, {"fallback_percentiles": (99.0, 1.0)}, {"fallback_percentiles": (-1.0, 50.0)}):
        with pytest.raises(ValueError):
            DisplayConversion(**bad)


def test_reader_imports_no_torch() -> None:
    code = "import sys, olvf.runtime.inputs.reader; sys.exit(any(m.split('.')[0] == 'torch' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _noise(dtype: type, low: int, high: int) -> np.ndarray:
    return np.random.default_rng(4).integers(low, high + 1, (300, 256)).astype(dtype)


@pytest.mark.parametrize(
    "stored,elements",
    [
        (_noise(np.uint16, 0, 4095), {"bits_stored": 12, "WindowCenter": 2000, "WindowWidth": 1500}),
        (
            _noise(np.uint16, 300, 3800),
            {"bits_stored": 12, "photometric": "MONOCHROME1", "WindowCenter": 1800, "WindowWidth": 3000},
        ),
        (
            _noise(np.int16, -2000, 2000),
            {"RescaleSlope": 2, "RescaleIntercept": -10, "WindowCenter": 0, "WindowWidth": 5000},
        ),
        (
            _noise(np.uint16, 0, 4095),
            {"bits_stored": 12, "WindowCenter": 2048, "WindowWidth": 4096, "VOILUTFunction": "SIGMOID"},
        ),
        (
            _noise(np.uint16, 0, 4095),
            {"bits_stored": 12, "VOILUTSequence": [voi_lut_item([(i * 7) % 4096 for i in range(4096)], 12)]},
        ),
        (_noise(np.uint16, 0, 4095), {"bits_stored": 12}),  # no window: percentiles of the image, per pixel
    ],
    ids=["window", "monochrome1", "signed-rescaled", "sigmoid", "voi-lut", "percentile"],
)
def test_reading_through_a_value_table_equals_the_per_pixel_conversion(
    tmp_path: Path, monkeypatch, stored: np.ndarray, elements: dict
) -> None:
    """Integer films are converted through a table of their possible values: same pixels, same record."""
    from olvf.runtime.inputs import dicom_gray as radiograph

    path = make_dicom(tmp_path / "film.dcm", stored, **elements)
    used = []
    table = radiograph._by_table
    monkeypatch.setattr(radiograph, "_by_table", lambda *args: used.append(table(*args)) or used[-1])
    fast = read_radiograph(path)
    assert (used[0] is not None) == ("WindowCenter" in elements or "VOILUTSequence" in elements)
    monkeypatch.setattr(radiograph, "_by_table", lambda *args: None)
    slow = read_radiograph(path)
    assert fast.pixels.dtype == slow.pixels.dtype == np.float32
    np.testing.assert_array_equal(fast.pixels, slow.pixels)
    assert fast.info == slow.info
