"""An olvf study (source image, Secondary Capture, SR) stored into a real Orthanc and opened in OHIF.

Runs ``tests/viewer/screenshot.py``: Orthanc with its DICOMweb plugin on loopback, the prebuilt
OHIF Viewer served next to it, headless Chromium taking screenshots. Skips, saying what is missing,
where Orthanc, its DICOMweb plugin, Chromium or the OHIF build (``tests/viewer/fetch_ohif.sh``) is
absent; it never downloads the viewer itself.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pytest

HERE = Path(__file__).resolve().parent


def _load_screenshot_module():
    spec = importlib.util.spec_from_file_location("olvf_viewer_screenshot", HERE / "screenshot.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _distinct_colours(path: Path) -> int:
    import cv2
    import numpy as np

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"{path} is not a readable PNG"
    packed = (img[..., 0].astype(np.uint32) << 16) | (img[..., 1].astype(np.uint32) << 8) | img[..., 2]
    return int(np.unique(packed).size)


@pytest.mark.slow
def test_olvf_study_opens_in_ohif_over_orthanc_dicomweb(request, tmp_path: Path) -> None:
    shot = _load_screenshot_module()
    missing = shot.missing_requirements()
    if missing:
        pytest.skip("viewer check needs: " + "; ".join(missing))
    # An existing demo bundle saves the session fixture's export (about a minute): OLVF_DEMO_BUNDLE=/tmp/demo
    env_bundle = os.environ.get("OLVF_DEMO_BUNDLE")
    bundle = Path(env_bundle) if env_bundle else request.getfixturevalue("demo_bundle")

    phantom_cli = shutil.which("olvf-phantom", path=str(Path(sys.executable).parent)) or shutil.which("olvf-phantom")
    assert phantom_cli, "olvf-phantom is not installed"
    phantom = tmp_path / "phantom.dcm"
    subprocess.run(
        [phantom_cli, str(phantom), "--seed", "1", "--fracture", "L2:fresh", "--force"],
        check=True,
        stdout=subprocess.DEVNULL,
    )

    work = tmp_path / "work"
    work.mkdir()
    files = shot.run_pipeline(bundle, phantom, work)
    result = shot.screenshots(files, tmp_path / "png", shot.DEFAULT_OHIF_DIST, work, timeout=40)

    for key in ("study_list", "viewer_source", "viewer_sc", "viewer_sr"):
        path = result["files"][key]
        assert path.is_file() and path.stat().st_size > 10_000, f"{key}: {path} missing or tiny"
        assert _distinct_colours(path) > 200, f"{key}: {path} looks blank"
    # the SC view is not the source view: double-clicking the SC thumbnail changed the viewport
    assert result["files"]["viewer_sc"].read_bytes() != result["files"]["viewer_source"].read_bytes()
    # The SR opens: OHIF draws each vertebra's region with its numbers, a probability of 0 with no number (never a
    # bare unit a reader could take for "1"), and the SR's series is listed under its description.
    assert "sr_error" not in result, result.get("sr_error")
    text = result["sr_text"]
    sr = hd.sr.srread(files[2])
    groups = sr.content.get_planar_roi_measurement_groups()
    assert groups, "the phantom's SR has no vertebra"
    for group in groups:
        assert f"363698007: {group.finding_sites[0].value.meaning}" in text  # the label OHIF puts on the region
        (fresh,) = [m for m in group.get_measurements() if m.name.meaning.startswith("Probability of fresh")]
        shown = f"{fresh.value:.2f} %" if fresh.value else "%"
        assert f"{fresh.name.meaning}: {shown}" in text, (group.tracking_identifier, shown)
    assert "fracture: 1\n" not in text + "\n" and "fracture: 1Prob" not in text
    assert sr.SeriesDescription in text
