"""What PACS send decodes out of the box, with permissively licensed codecs only.

A good film is encoded at test time in every transfer syntax archived CR/DX
arrive in (by GDCM, pydicom's own encoders, or dcmtk where it is installed)
and must read back to the same pixels as the uncompressed file: exactly for
the lossless syntaxes, closely for the lossy ones. pydicom's bundled test
files cover the syntaxes as other writers produce them. python-gdcm ships no
test images (its wheel holds the library and command-line tools only), so
GDCM's own test data cannot be used here.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import gdcm
import numpy as np
import pydicom
import pytest
from hostile_inputs import good_dataset
from pydicom.data import get_testdata_file
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from olvf.runtime.inputs.reader import read_radiograph

ROOT = Path(__file__).parents[2]


def _native(path: Path) -> Path:
    good_dataset().save_as(path, enforce_file_format=True)
    return path


def _gdcm(syntax: int, *, lossy: bool = False) -> Callable[[Path, Path], None]:
    def encode(source: Path, path: Path) -> None:
        reader = gdcm.ImageReader()
        reader.SetFileName(str(source))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(syntax))
        change.SetInput(reader.GetImage())
        if lossy:
            codec = gdcm.JPEGLSCodec()
            codec.SetLossless(False)
            codec.SetLossyError(2)
            change.SetUserCodec(codec)
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(path))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()

    return encode


def _pydicom(syntax: str, plugin: str = "") -> Callable[[Path, Path], None]:
    def encode(source: Path, path: Path) -> None:
        ds = pydicom.dcmread(source)
        if syntax == DeflatedExplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = syntax
            ds.save_as(path, enforce_file_format=True)
            return
        ds.compress(syntax, encoding_plugin=plugin, generate_instance_uid=False)
        ds.save_as(path, enforce_file_format=True)

    return encode


LOSSLESS = [
    ("jpeg-lossless-process-14", JPEGLossless, _gdcm(gdcm.TransferSyntax.JPEGLosslessProcess14)),
    ("jpeg-lossless-sv1", JPEGLosslessSV1, _gdcm(gdcm.TransferSyntax.JPEGLosslessProcess14_1)),
    ("jpeg-ls-lossless", JPEGLSLossless, _gdcm(gdcm.TransferSyntax.JPEGLSLossless)),
    ("jpeg-2000-lossless", JPEG2000Lossless, _gdcm(gdcm.TransferSyntax.JPEG2000Lossless)),
    ("rle", RLELossless, _pydicom(RLELossless)),
    ("deflate", DeflatedExplicitVRLittleEndian, _pydicom(DeflatedExplicitVRLittleEndian)),
]


@pytest.mark.parametrize(("label", "syntax", "encode"), LOSSLESS, ids=[row[0] for row in LOSSLESS])
def test_lossless_pacs_syntaxes_read_to_the_same_pixels(tmp_path: Path, label: str, syntax: str, encode) -> None:
    native = _native(tmp_path / "native.dcm")
    encoded = tmp_path / f"{label}.dcm"
    encode(native, encoded)
    assert pydicom.dcmread(encoded, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    reference = read_radiograph(native)
    result = read_radiograph(encoded)
    assert result.info.transfer_syntax == syntax.name
    np.testing.assert_array_equal(result.pixels, reference.pixels)


def test_near_lossless_jpeg_ls_reads_within_its_error(tmp_path: Path) -> None:
    native = _native(tmp_path / "native.dcm")
    _gdcm(gdcm.TransferSyntax.JPEGLSNearLossless, lossy=True)(native, tmp_path / "near.dcm")
    result = read_radiograph(tmp_path / "near.dcm")
    assert result.info.transfer_syntax == JPEGLSNearLossless.name
    width = float(good_dataset().WindowWidth)
    assert np.abs(result.pixels - read_radiograph(native).pixels).max() <= 2 / (width - 1) + 1e-6  # NEAR = 2 values


@pytest.mark.skipif(shutil.which("dcmcjpeg") is None, reason="dcmtk's dcmcjpeg makes the 12-bit JPEG (apt dcmtk)")
def test_jpeg_extended_12_bit_from_dcmtk_reads_as_dcmtk_decodes_it(tmp_path: Path, capfd) -> None:
    """The usual lossy syntax of older CR archives: 12-bit JPEG, refused by pydicom's GDCM plugin, read by olvf's."""
    native = _native(tmp_path / "native.dcm")
    lossy = tmp_path / "extended.dcm"
    subprocess.run(["dcmcjpeg", "+ee", "+q", "95", str(native), str(lossy)], check=True, capture_output=True)
    assert pydicom.dcmread(lossy, stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEGExtended12Bit
    decoded = tmp_path / "dcmtk.dcm"
    subprocess.run(["dcmdjpeg", str(lossy), str(decoded)], check=True, capture_output=True)
    capfd.readouterr()
    result = read_radiograph(lossy)
    assert capfd.readouterr().err == "", "IJG's chatter on file descriptor 2 becomes a note, not terminal output"
    np.testing.assert_array_equal(result.pixels, read_radiograph(decoded).pixels)
    assert np.abs(result.pixels - read_radiograph(native).pixels).mean() < 0.01


def _bundled(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    return str(path)


BUNDLED = [
    ("JPGExtended.dcm", JPEGExtended12Bit),
    ("JPEG-lossy.dcm", JPEGExtended12Bit),
    ("SC_rgb_jpeg_gdcm.dcm", JPEGLosslessSV1),
    ("MR_small_jpeg_ls_lossless.dcm", JPEGLSLossless),
    ("JPEGLSNearLossless_16.dcm", JPEGLSNearLossless),
    ("MR_small_jp2klossless.dcm", JPEG2000Lossless),
    ("JPEG2000.dcm", JPEG2000),
    ("MR_small_RLE.dcm", RLELossless),
    ("image_dfl.dcm", DeflatedExplicitVRLittleEndian),
    ("MR_small_bigendian.dcm", ExplicitVRBigEndian),
]


@pytest.mark.parametrize(("name", "syntax"), BUNDLED, ids=[row[0] for row in BUNDLED])
def test_pydicoms_files_of_each_syntax_decode(name: str, syntax: str) -> None:
    path = _bundled(name)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    result = read_radiograph(path, min_side=1)  # pydicom's test images are a few pixels wide
    assert result.info.transfer_syntax == syntax.name
    assert np.isfinite(result.pixels).all() and result.pixels.min() < result.pixels.max()


def test_jpeg_ls_reads_exactly_as_the_uncompressed_original() -> None:
    np.testing.assert_array_equal(
        read_radiograph(_bundled("MR_small_jpeg_ls_lossless.dcm")).pixels,
        read_radiograph(_bundled("MR_small.dcm")).pixels,
    )


def test_the_codecs_are_base_dependencies_and_permissively_licensed() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in dependencies}
    assert {"python-gdcm", "pyjpegls", "pylibjpeg-openjpeg", "pylibjpeg-rle", "cryptography"} <= names
    assert "pylibjpeg-libjpeg" not in names, "GPLv3"
