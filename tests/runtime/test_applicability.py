"""The intended-use gate: what a header says, what the detector's boxes look like, and a third outcome.

Negatives are made here: phantoms relabelled with pydicom (CT, CHEST, PA, DERIVED, MR), boxes drawn by hand for
the anatomy rules. Whole-film negatives through the demo bundle are in tests/test_not_for_me.py.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from olvf.runtime.bundle.config import AnatomyRules, IntendedUse
from olvf.runtime.bundle.manifest import manifest_from_dict
from olvf.runtime.inputs.reader import read_radiograph
from olvf.runtime.steps.applicability import Check, Gate, check_anatomy, check_header

RULES = AnatomyRules()
USE = IntendedUse()


@pytest.fixture(scope="module")
def phantom_dcm(tmp_path_factory) -> Path:
    from olvf.phantom import make_phantom, write_dicom

    path = tmp_path_factory.mktemp("phantom") / "phantom.dcm"
    write_dicom(make_phantom(3, size=(600, 480)), path)
    return path


def relabelled(source: Path, folder: Path, name: str, **elements) -> Path:
    ds = pydicom.dcmread(source)
    for keyword, value in elements.items():
        if value is None:
            delattr(ds, keyword)
        else:
            with warnings.catch_warnings():  # real headers carry CS values pydicom calls invalid ("L-SPINE")
                warnings.simplefilter("ignore", UserWarning)
                setattr(ds, keyword, value)
    if "SOPClassUID" in elements:
        ds.file_meta.MediaStorageSOPClassUID = elements["SOPClassUID"]
    path = folder / f"{name}.dcm"
    ds.save_as(path)
    return path


def header_of(path: Path) -> Check:
    return check_header(read_radiograph(path).info, USE)


def test_the_phantom_header_fits_the_intended_use(phantom_dcm: Path) -> None:
    check = header_of(phantom_dcm)
    assert check.passed is True and check.figures["modality"] == "DX" and check.figures["view_position"] == "LL"


@pytest.mark.parametrize(
    "elements, named",
    [
        ({"Modality": "CT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}, "Modality (0008,0060) is CT"),
        ({"Modality": "MR"}, "Modality (0008,0060) is MR"),
        ({"Modality": "RF"}, "Modality (0008,0060) is RF"),
        ({"BodyPartExamined": "CHEST"}, "Body Part Examined (0018,0015) is CHEST"),
        ({"BodyPartExamined": "KNEE"}, "Body Part Examined (0018,0015) is KNEE"),
        ({"ViewPosition": "PA"}, "View Position (0018,5101) is PA"),
        ({"ViewPosition": "AP"}, "View Position (0018,5101) is AP"),
        ({"ImageType": ["DERIVED", "PRIMARY"]}, "Image Type (0008,0008) is DERIVED\\PRIMARY; value 1 must be ORIGINAL"),
        ({"ImageType": ["ORIGINAL", "SECONDARY"]}, "value 2 must be PRIMARY"),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, "SOP Class UID (0008,0016) is Secondary Capture"),
    ],
)
def test_a_header_that_contradicts_the_intended_use_names_the_element(phantom_dcm, tmp_path, elements, named) -> None:
    check = header_of(relabelled(phantom_dcm, tmp_path, "x", **elements))
    assert check.passed is False and named in check.detail, check.detail


@pytest.mark.parametrize("value", ["L-SPINE", "lspine", "Lumbar Spine", "TL_SPINE"])
def test_spellings_of_the_lumbar_spine_are_one_body_part(phantom_dcm, tmp_path, value) -> None:
    assert header_of(relabelled(phantom_dcm, tmp_path, "x", BodyPartExamined=value)).passed is True


def test_absent_header_values_are_no_pass_but_leave_it_to_the_pixels(phantom_dcm, tmp_path) -> None:
    check = header_of(relabelled(phantom_dcm, tmp_path, "x", BodyPartExamined=None, ViewPosition=None))
    assert check.passed is True and "body part examined, view position not given: the pixels decide" in check.detail


def test_a_manufacturer_is_no_evidence(phantom_dcm, tmp_path) -> None:
    """The phantom's Manufacturer on a CT is still a CT."""
    path = relabelled(phantom_dcm, tmp_path, "x", Modality="CT", Manufacturer="olvf-phantom (synthetic)")
    assert header_of(path).passed is False


def column(n: int = 6, *, h: float = 60.0, aspect: float = 1.4, step: float = 1.25, x0: float = 300.0) -> np.ndarray:
    """``n`` bodies of a lateral column: height ``h`` px, width ``aspect * h``, centres ``step * h`` apart, with a
    gentle lordotic curve."""
    boxes = []
    for i in range(n):
        cy = 200 + i * step * h
        cx = x0 + 0.02 * (i - n / 2) ** 2 * h
        w = aspect * h
        boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.array(boxes, np.float32)


LEVELS6 = ("T12", "L1", "L2", "L3", "L4", "L5")


def anatomy(boxes, levels=LEVELS6, spacing=None, named=True) -> Check:
    return check_anatomy(boxes, levels[: len(boxes)], rules=RULES, spacing_mm=spacing, named_levels=named)


def test_a_lateral_column_passes_with_its_figures() -> None:
    check = anatomy(column(), spacing=(0.5, 0.5))
    assert check.passed is True, check.detail
    assert check.figures["median_height_mm"] == 30.0 and check.figures["bodies"] == 6
    assert anatomy(column(4), named=False).passed is True  # levels by position only: the geometry speaks


def test_one_missed_level_is_allowed_two_are_not() -> None:
    boxes = column(6)
    keep = [0, 1, 3, 4, 5]
    assert anatomy(boxes[keep], tuple(LEVELS6[i] for i in keep)).passed is True
    keep = [0, 3, 4, 5]
    check = anatomy(boxes[keep], tuple(LEVELS6[i] for i in keep))
    assert check.passed is False and "skip more than 1 level" in check.detail


@pytest.mark.parametrize(
    "make, phrase",
    [
        (lambda: column(2), "only 2 vertebral bodies found"),
        (lambda: column(0)[:0], "no vertebral body found"),
        (lambda: column(aspect=3.2), "body width/height"),
        (lambda: column(aspect=0.5), "body width/height"),
        (lambda: column(step=3.5), "body heights apart per level"),
        (lambda: column(step=0.5), "two bodies overlap"),
    ],
)
def test_boxes_that_are_no_lumbar_column_are_refused_with_the_rule(make, phrase) -> None:
    check = anatomy(make())
    assert check.passed is False and phrase in check.detail, check.detail


def test_levels_upside_down_are_refused() -> None:
    check = anatomy(column(), tuple(reversed(LEVELS6)))
    assert check.passed is False and "not craniocaudally" in check.detail


def test_a_lying_column_is_refused() -> None:
    boxes = column()
    lying = boxes[:, [1, 0, 3, 2]] * [1.0, 1.0, 1.0, 1.0]  # transposed: the column runs across the image
    check = anatomy(lying.astype(np.float32), named=False)
    assert check.passed is False and ("degrees from upright" in check.detail or "width/height" in check.detail)


def test_sizes_that_differ_too_much_and_an_off_curve_centre_are_refused() -> None:
    boxes = column()
    boxes[3, [0, 2]] += 150  # L3 moved sideways, off the curve
    check = anatomy(boxes)
    assert check.passed is False and "off the curve" in check.detail
    boxes = column()
    boxes[2] = [boxes[2, 0], boxes[2, 1], boxes[2, 0] + 160, boxes[2, 1] + 60]  # one body twice as wide
    check = anatomy(boxes)
    assert check.passed is False and "body widths differ" in check.detail


def test_bodies_of_no_human_size_are_refused_where_the_spacing_is_known() -> None:
    check = anatomy(column(), spacing=(0.05, 0.05))  # 3 mm bodies: a hand, a dental film
    assert check.passed is False and "mm (width x height)" in check.detail
    assert anatomy(column(), spacing=None).passed is True  # unknown spacing: the ratios only


def test_the_gate_decides_on_the_first_failed_check_and_the_override_keeps_the_reason() -> None:
    checks = [Check("header", True, "ok"), Check("anatomy", False, "not a column"), Check("domain", None, "n/a")]
    refused = Gate().decide(checks)
    assert (refused.assessed, refused.reason, refused.overridden) == (False, "not a column", False)
    assert refused.line == "NOT ASSESSED: not a column"
    research = Gate(override=True).decide(checks)
    assert research.assessed and research.overridden and research.line.startswith("OUTSIDE INTENDED USE")
    clean = Gate().decide([Check("header", True, "ok"), Check("domain", None, "not checked")])
    assert clean.assessed and clean.reason is None and clean.line == ""
    assert json.dumps(refused.to_dict())  # plain JSON


def test_intended_use_travels_in_the_manifest_and_a_site_may_tune_it(tiny_bundle: Path) -> None:
    raw = json.loads((tiny_bundle / "manifest.json").read_text())
    assert raw["intended_use"]["modalities"] == ["CR", "DX"]
    assert manifest_from_dict(raw).intended_use == IntendedUse()
    raw.pop("intended_use")
    assert manifest_from_dict(raw).intended_use == IntendedUse(), "older bundles get the study's intended use"
    tuned = IntendedUse.from_dict({"body_parts": ["LSPINE"], "anatomy": {"min_levels": 4}})
    assert tuned.body_parts == ("LSPINE",) and tuned.anatomy.min_levels == 4 and tuned.modalities == ("CR", "DX")
    with pytest.raises(ValueError, match="unknown key.*body_part"):
        IntendedUse.from_dict({"body_part": ["LSPINE"]})
    with pytest.raises(ValueError, match="anatomy.aspect"):
        IntendedUse.from_dict({"anatomy": {"aspect": [2.0, 1.0]}})


def test_a_site_sets_its_bundles_intended_use_and_the_pipeline_follows_it(cascade_bundle, phantom_dcm, tmp_path):
    import shutil

    import olvf
    from olvf.export.cli import main as export

    bundle = Path(shutil.copytree(cascade_bundle, tmp_path / "bundle"))
    with olvf.load(bundle, backend="onnxruntime") as rt:
        before = rt.infer(phantom_dcm).applicability.check("header")
    assert before is not None and before.passed is True
    use = tmp_path / "use.json"
    use.write_text(json.dumps({"modalities": ["CR"], "description": "CR lateral lumbar films of this site"}))
    assert export(["--intended-use", str(bundle), str(use)]) == 0
    with olvf.load(bundle, backend="onnxruntime") as rt:
        assert rt.manifest.intended_use.modalities == ("CR",)
        result = rt.infer(phantom_dcm)
    assert not result.assessed and "Modality (0008,0060) is DX; the bundle is for CR" in result.applicability.reason
    assert result.applicability.intended_use == "CR lateral lumbar films of this site"
    manifest = (bundle / "manifest.json").read_bytes()
    use.write_text(json.dumps({"modality": ["CR"]}))
    assert export(["--intended-use", str(bundle), str(use)]) == 2  # a misspelt key is refused, nothing written
    use.write_text("{not json")
    assert export(["--intended-use", str(bundle), str(use)]) == 2
    assert (bundle / "manifest.json").read_bytes() == manifest


@pytest.mark.parametrize("demo", [False, True])
@pytest.mark.parametrize("state", ["assessed", "not assessed", "outside"])
@pytest.mark.parametrize("kind", ["overlay", "findings SR"])
def test_series_descriptions_say_demo_and_not_assessed_first_and_fit_a_long_string(demo, state, kind) -> None:
    """A too long description once made a not-assessed chest CR's results fail to build (olvf-serve sent nothing)."""
    from olvf.runtime.writers.dicom_sc import MAX_LO, series_description
    from olvf.runtime.writers.findings import Algorithm, StudyFindings

    findings = StudyFindings(
        vertebrae=(),
        mri_recommended=None if state == "not assessed" else False,
        mri_reason="why",
        operating_point=0.3131,
        demo=demo,
        algorithm=Algorithm("olvf", "0.1.0", "a" * 64, "onnxruntime cpu fp32"),
        outside_intended_use="Body Part Examined is CHEST" if state == "outside" else None,
    )
    text = series_description(kind, findings)
    assert len(text) <= MAX_LO and text.startswith("DEMO - " if demo else "")
    assert ("NOT ASSESSED - " in text) == (state == "not assessed") and ("OUTSIDE USE - " in text) == (
        state == "outside"
    )
