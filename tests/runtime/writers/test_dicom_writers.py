"""DICOM results as a PACS would receive them: identity, pixels, findings, UIDs, files, and no patient data leaks.

Validation by independent tools (dciodvfy, dcmtk, Orthanc) is in test_dicom_tools.py.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_fixtures import (
    ACCESSION,
    BUNDLE_SHA,
    OTHER_BUNDLE_SHA,
    PATIENT_ID,
    PATIENT_NAME,
    findings_for,
    overlay_rgb,
    write_source,
)
from pydicom.sr._concepts_dict import concepts
from pydicom.sr.coding import Code
from pydicom.uid import UID

from olvf.errors import InputError, OutputExistsError
from olvf.runtime.writers import (
    NO_PATIENT_CONTEXT,
    SC_NAME,
    SR_NAME,
    DicomSource,
    NoPatientContextError,
    StudyFindings,
    VertebraFinding,
    build_dicom_results,
    read_dicom_source,
    write_dicom_results,
)
from olvf.runtime.writers import dicom_codes as codes
from olvf.runtime.writers.dicom_sr import box_polyline
from olvf.runtime.writers.overlay import DEMO_BACKGROUND

JAPANESE_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"
JAPANESE_CHARSET = ["", "ISO 2022 IR 87"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A source DICOM, its findings and overlay, and the results written once."""
    folder = tmp_path_factory.mktemp("study")
    source, phantom = write_source(folder / "source.dcm")
    findings = findings_for(phantom)
    overlay = overlay_rgb(source, findings)
    out = folder / "out"
    results = write_dicom_results(out, source, overlay, findings)
    return {
        "source": source,
        "phantom": phantom,
        "findings": findings,
        "overlay": overlay,
        "results": results,
        "sc": pydicom.dcmread(results.secondary_capture),
        "sr": hd.sr.srread(results.structured_report),
        "header": pydicom.dcmread(source, stop_before_pixels=True),
    }


def read_back(source: Path, findings: StudyFindings, out: Path, **kwargs):
    results = write_dicom_results(out, source, overlay_rgb(source, findings), findings, **kwargs)
    return results, pydicom.dcmread(results.secondary_capture), hd.sr.srread(results.structured_report)


# --- identity -------------------------------------------------------------------------------------


def test_both_objects_are_filed_with_the_source_patient_and_study_in_new_series(study):
    header, sc, sr = study["header"], study["sc"], study["sr"]
    for ds in (sc, sr):
        assert str(ds.PatientName) == PATIENT_NAME and ds.PatientID == PATIENT_ID
        assert ds.PatientBirthDate == "19410203" and ds.PatientSex == "F"
        assert ds.AccessionNumber == ACCESSION and ds.StudyID == header.StudyID
        assert ds.StudyInstanceUID == header.StudyInstanceUID
        assert (ds.StudyDate, ds.StudyTime) == (header.StudyDate, header.StudyTime)
        assert ds.StudyDescription == header.StudyDescription
        assert ds.SeriesInstanceUID != header.SeriesInstanceUID
    assert sc.SeriesInstanceUID != sr.SeriesInstanceUID
    assert list(sc.PatientOrientation) == list(header.PatientOrientation) == ["P", "F"]  # rows and columns kept
    assert (sc.Modality, sr.Modality) == ("OT", "SR")
    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert sr.SOPClassUID == pydicom.uid.ComprehensiveSRStorage


@pytest.mark.parametrize(
    ("name", "charset"),
    [("ANONYMOUS", "ISO_IR 100"), ("Müller^Jürgen", "ISO_IR 100"), (JAPANESE_NAME, JAPANESE_CHARSET)],
    ids=["single-component", "latin1", "japanese"],
)
def test_patient_names_and_character_sets_are_copied_as_stored(tmp_path, name, charset):
    # "ANONYMOUS" has no caret: valid DICOM that highdicom would warn about (under pytest: fail) with the name in it.
    source, phantom = write_source(tmp_path / "source.dcm", patient_name=name, character_set=charset, size=(800, 640))
    _, sc, sr = read_back(source, findings_for(phantom), tmp_path / "out")
    for ds in (sc, sr):
        assert str(ds.PatientName) == name
        assert ds.SpecificCharacterSet == charset


# --- Secondary Capture ----------------------------------------------------------------------------


def test_secondary_capture_shows_the_overlay_as_drawn_and_references_its_source(study):
    sc, header, overlay = study["sc"], study["header"], study["overlay"]
    assert sc.PhotometricInterpretation == "RGB" and sc.SamplesPerPixel == 3 and sc.BitsStored == 8
    assert sc.BurnedInAnnotation == "YES"
    assert list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    (ref,) = sc.SourceImageSequence
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (header.SOPClassUID, header.SOPInstanceUID)
    assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    assert "PresentationLUTShape" not in sc and "WindowCenter" not in sc  # RGB: shown as stored
    # The 1200 x 960 film's overlay is 1299 rows (header band): shrunk to fit the source, aspect kept.
    assert (sc.Rows, sc.Columns) == (1200, round(960 * 1200 / overlay.shape[0]))
    expected = cv2.resize(overlay, (sc.Columns, sc.Rows), interpolation=cv2.INTER_AREA)
    assert np.array_equal(sc.pixel_array, expected)
    assert sc.DerivationCodeSequence[0].CodeValue == "113085"  # spatial resampling, said so


def test_large_films_keep_the_overlay_pixel_for_pixel(tmp_path):
    source, phantom = write_source(tmp_path / "source.dcm", size=(2500, 2000))
    findings = findings_for(phantom)
    overlay = overlay_rgb(source, findings)
    assert overlay.shape[0] < 2500  # the overlay shrinks big films itself
    _, sc, _ = read_back(source, findings, tmp_path / "out")
    assert np.array_equal(sc.pixel_array, overlay)
    assert sc.DerivationCodeSequence[0].CodeValue == "113085"  # the overlay resampled the film; the SC says so


def test_small_films_are_not_enlarged_in_the_pacs(tmp_path):
    source, phantom = write_source(tmp_path / "source.dcm", size=(400, 320))
    findings = findings_for(phantom)
    assert overlay_rgb(source, findings).shape[0] > 800  # enlarged for legible labels
    _, sc, _ = read_back(source, findings, tmp_path / "out")
    assert sc.Rows <= 400 and sc.Columns <= 320


def test_monochrome1_source_gives_an_rgb_capture_with_bone_bright(tmp_path):
    source, phantom = write_source(tmp_path / "source.dcm", monochrome1=True, size=(2500, 2000))
    findings = findings_for(phantom)
    _, sc, _ = read_back(source, findings, tmp_path / "out")
    assert pydicom.dcmread(source).PhotometricInterpretation == "MONOCHROME1"
    assert sc.PhotometricInterpretation == "RGB" and "PresentationLUTShape" not in sc
    assert np.array_equal(sc.pixel_array, overlay_rgb(source, findings))
    # Bone shows bright, air dark, as drawn: the centre of L3 against the top-right corner (air).
    gray = sc.pixel_array.mean(axis=2)
    top = sc.Rows - 1600  # the overlay's header band above the film (scale 0.64)
    x1, y1, x2, y2 = (v * 0.64 for v in phantom.levels[3].box)
    body = gray[int(y1 + top) + 10 : int(y2 + top) - 10, int(x1) + 10 : int(x2) - 10]
    air = gray[top + 5 : top + 60, -60:-5]
    assert body.mean() > air.mean() + 60


def test_a_gray_picture_is_stored_monochrome2_with_an_identity_window(study, tmp_path):
    gray = np.repeat(np.linspace(0, 255, 600, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(400, axis=0)
    sc, _, _ = build_dicom_results(read_dicom_source(study["source"]), gray, study["findings"])
    assert sc.PhotometricInterpretation == "MONOCHROME2" and sc.SamplesPerPixel == 1
    assert (float(sc.WindowCenter), float(sc.WindowWidth)) == (128.0, 256.0)
    assert np.array_equal(sc.pixel_array, gray[..., 0])


# --- Structured Report ----------------------------------------------------------------------------


def test_highdicom_reads_back_every_vertebra_as_given(study):
    sr, findings, header = study["sr"], study["findings"], study["header"]
    groups = sr.content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [v.level for v in findings.vertebrae]
    assert len({g.tracking_uid for g in groups}) == len(groups)
    for group, vertebra in zip(groups, findings.vertebrae):
        (site,) = group.finding_sites
        assert site.value == codes.LEVEL_SITES[vertebra.level]
        evaluations = {e.name.value: e.value for e in group.get_qualitative_evaluations()}
        assert evaluations[codes.CLASS_NAME.value] == codes.CLASS_VALUES[vertebra.prediction]
        assert evaluations[codes.GRADCAM_PEAK.value] == codes.REGION_VALUES[vertebra.gradcam_peak_region]
        measured = {m.name.value: m for m in group.get_measurements()}
        for name, p in vertebra.probabilities.items():
            m = measured[codes.PROBABILITY_NAMES[name].value]
            assert m.value == pytest.approx(p, abs=1e-12) and m.unit.value == "1"
        assert measured[codes.DETECTOR_SCORE.value].value == pytest.approx(vertebra.detector_score, abs=1e-12)
        roi = group.roi
        assert roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        assert np.allclose(roi.value, box_polyline(vertebra.box)) and np.array_equal(roi.value[0], roi.value[-1])
        (image,) = roi.ContentSequence  # "selected from" the source image
        assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == header.SOPInstanceUID
        algorithm = {i.name.value: i.value for i in group[0].ContentSequence if i.name.value in ("111001", "111002")}
        assert algorithm["111001"] == "olvf"


def test_the_study_result_carries_the_mri_recommendation_and_operating_point(study):
    sr, findings = study["sr"], study["findings"]
    (group,) = sr.content.get_image_measurement_groups()
    assert group.tracking_identifier == "olvf study result"
    (mri,) = group.get_qualitative_evaluations(codes.MRI_RECOMMENDED)
    assert mri.value == (codes.YES if findings.mri_recommended else codes.NO)
    (op,) = group.get_measurements(codes.OPERATING_POINT)
    assert op.value == pytest.approx(findings.operating_point)
    texts = {i.name.value: i.value for i in group[0].ContentSequence if i.ValueType == "TEXT"}
    assert texts[codes.MRI_REASON.value] == findings.mri_reason
    assert "DEMO" in texts[codes.DEMO_WARNING.value]


def test_the_sr_lists_the_source_and_the_secondary_capture_as_evidence(study):
    sr, sc, header = study["sr"], study["sc"], study["header"]
    evidence = set(sr.get_evidence(current_procedure_only=True))
    assert (header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID, header.SOPClassUID) in evidence
    assert (sc.StudyInstanceUID, sc.SeriesInstanceUID, sc.SOPInstanceUID, sc.SOPClassUID) in evidence


def _codes(ds):
    for element in ds.iterall():
        if element.VR == "SQ":
            for item in element.value:
                if "CodeValue" in item and "CodingSchemeDesignator" in item:
                    yield item.CodingSchemeDesignator, item.CodeValue, item.CodeMeaning


def test_every_code_in_the_sr_is_a_dicom_code_or_a_declared_private_one(study):
    sr = study["sr"]
    private = {(c.scheme_designator, c.value, c.meaning) for c in codes.PRIVATE_CODES}
    meanings: dict[tuple[str, str], set[str]] = {}
    for scheme, table in concepts.items():
        for entries in table.values():
            for value, (meaning, _) in entries.items():
                meanings.setdefault((scheme, value), set()).add(meaning)
    used = set(_codes(sr))
    assert any(c in private for c in used)
    # Standard codes must exist in PS3.16 (as pydicom bundles it); highdicom's template codes may word their
    # meaning as the template does (276214006 "Finding category"). RFC 5646 tags (en-US) are not in PS3.16.
    unknown = {c for c in used if c not in private and c[:2] not in meanings and c[0] != "RFC5646"}
    assert not unknown
    ours = [v for v in vars(codes).values() if isinstance(v, Code) and v.scheme_designator != codes.SCHEME]
    ours += list(codes.LEVEL_SITES.values())
    for code in ours:  # the codes olvf chose carry DICOM's own meaning
        assert code.meaning in meanings[code.scheme_designator, code.value]
    (scheme,) = sr.CodingSchemeIdentificationSequence
    assert (scheme.CodingSchemeDesignator, scheme.CodingSchemeVersion) == (codes.SCHEME, codes.SCHEME_VERSION)
    assert scheme.CodingSchemeName and scheme.CodingSchemeResponsibleOrganization


def test_level_codes_are_the_snomed_codes_dicom_lists_in_cid_7603():
    expected = {
        "T12": "23215003",
        "L1": "66794005",
        "L2": "14293000",
        "L3": "36470004",
        "L4": "11994002",
        "L5": "49668003",
    }
    for level, code in codes.LEVEL_SITES.items():
        assert (code.scheme_designator, code.value) == ("SCT", expected[level])
        ((meaning, cids),) = concepts["SCT"][f"{level}Vertebra"].values()
        assert 7603 in cids and meaning == f"{level} vertebra"


def test_unnamed_levels_and_no_vertebra_are_reported_without_guessed_sites(tmp_path, study):
    phantom = study["phantom"]
    source = read_dicom_source(study["source"])
    overlay = study["overlay"]
    unnamed = findings_for(phantom, levels=False)
    _, sr, _ = build_dicom_results(source, overlay, unnamed)
    groups = hd.sr.ComprehensiveSR.from_dataset(sr).content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [f"V{i + 1}" for i in range(len(phantom.levels))]
    assert all(g.finding_sites == [] for g in groups)
    empty = StudyFindings((), False, "no vertebral body was found", 0.5, False, unnamed.algorithm)
    _, sr, _ = build_dicom_results(source, overlay, empty)
    report = hd.sr.ComprehensiveSR.from_dataset(sr).content
    assert report.get_planar_roi_measurement_groups() == []
    (group,) = report.get_image_measurement_groups()
    (mri,) = group.get_qualitative_evaluations(codes.MRI_RECOMMENDED)
    assert mri.value == codes.NO


# --- DEMO -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("demo", [True, False])
def test_a_demo_bundle_says_so_in_series_sr_and_pixels_and_a_real_one_does_not(study, demo):
    source = read_dicom_source(study["source"])
    findings = findings_for(study["phantom"], demo=demo)
    sc, sr, _ = build_dicom_results(source, overlay_rgb(study["source"], findings), findings)
    assert sc.SeriesDescription.startswith("DEMO") is demo and sr.SeriesDescription.startswith("DEMO") is demo
    for ds in (sc, sr):
        assert BUNDLE_SHA[:8] in ds.SeriesDescription and "0.50" in ds.SeriesDescription
    texts = [e.value for e in sr.iterall() if e.keyword == "TextValue"]
    assert any("DEMO" in t for t in texts) is demo
    banner = tuple(int(v) for v in sc.pixel_array[3, sc.Columns // 2])
    assert (banner == tuple(reversed(DEMO_BACKGROUND))) is demo  # the red banner (BGR in overlay.py)


# --- UIDs and files -------------------------------------------------------------------------------


def test_uids_are_uuid_derived_and_the_same_for_the_same_input_and_bundle(study, tmp_path):
    source = read_dicom_source(study["source"])
    findings, overlay = study["findings"], study["overlay"]
    first = build_dicom_results(source, overlay, findings)
    again = build_dicom_results(source, overlay, findings)
    other_bundle = build_dicom_results(source, overlay, findings_for(study["phantom"], sha=OTHER_BUNDLE_SHA))
    other_path, other_phantom = write_source(tmp_path / "other.dcm", seed=4)
    other_source = build_dicom_results(read_dicom_source(other_path), overlay, findings)

    def uids(results):
        sc, sr, _ = results
        tracking = [
            g.tracking_uid for g in hd.sr.ComprehensiveSR.from_dataset(sr).content.get_planar_roi_measurement_groups()
        ]
        return [sc.SOPInstanceUID, sc.SeriesInstanceUID, sr.SOPInstanceUID, sr.SeriesInstanceUID, *tracking]

    assert uids(first) == uids(again)
    assert not set(uids(first)) & set(uids(other_bundle))
    assert not set(uids(first)) & set(uids(other_source))
    for uid in uids(first):
        assert uid.startswith("2.25.") and UID(uid).is_valid and len(uid) <= 64


def test_files_are_named_by_role_and_never_overwritten_without_force(study, tmp_path):
    results = study["results"]
    assert (results.secondary_capture.name, results.structured_report.name) == (SC_NAME, SR_NAME)
    assert sorted(p.name for p in results.secondary_capture.parent.iterdir()) == sorted([SC_NAME, SR_NAME])
    before = {p: p.read_bytes() for p in (results.secondary_capture, results.structured_report)}
    with pytest.raises(OutputExistsError, match="--force"):
        write_dicom_results(results.secondary_capture.parent, study["source"], study["overlay"], study["findings"])
    assert {p: p.read_bytes() for p in before} == before
    out = tmp_path / "forced"
    first, _, _ = read_back(study["source"], study["findings"], out)
    again, _, _ = read_back(study["source"], study["findings"], out, force=True)
    assert (again.sc_sop_instance_uid, again.sr_sop_instance_uid) == (
        first.sc_sop_instance_uid,
        first.sr_sop_instance_uid,
    )


def test_a_failure_while_building_writes_nothing(study, tmp_path):
    rows, columns = read_dicom_source(study["source"]).size
    outside = VertebraFinding(
        "L1", (10.0, 10.0, columns + 5.0, 50.0), "normal", study["findings"].vertebrae[0].probabilities, "centre"
    )
    findings = StudyFindings((outside,), False, "test", 0.5, False, study["findings"].algorithm)
    with pytest.raises(ValueError, match="reaches past the source image"):
        write_dicom_results(tmp_path / "out", study["source"], study["overlay"], findings)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_png_inputs_have_no_patient_context_and_say_so_without_a_file_name(tmp_path, study):
    png = tmp_path / "film.png"
    cv2.imwrite(str(png), np.zeros((300, 300), np.uint8))
    with pytest.raises(NoPatientContextError) as caught:
        write_dicom_results(tmp_path / "out", png, study["overlay"], study["findings"])
    assert isinstance(caught.value, InputError) and str(caught.value) == NO_PATIENT_CONTEXT
    assert "film.png" not in str(caught.value) and caught.value.path == png
    assert not (tmp_path / "out").exists()


def test_a_dicom_without_study_uid_is_refused_with_a_reason(tmp_path, study):
    ds = pydicom.dcmread(study["source"])
    del ds.StudyInstanceUID
    ds.save_as(tmp_path / "no_study.dcm")
    with pytest.raises(InputError, match="no StudyInstanceUID"):
        read_dicom_source(tmp_path / "no_study.dcm")


def test_patient_data_reaches_no_console_log_or_file_name(tmp_path, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    source, phantom = write_source(tmp_path / "source.dcm", patient_name="ANONYMOUS", size=(800, 640))
    capfd.readouterr()
    results, _, _ = read_back(source, findings_for(phantom), tmp_path / "out")
    header = pydicom.dcmread(source, stop_before_pixels=True)
    secrets = ["ANONYMOUS", PATIENT_ID, ACCESSION, "19410203", header.StudyInstanceUID, header.SOPInstanceUID]
    captured = capfd.readouterr()
    seen = captured.out + captured.err + "\n".join(r.getMessage() for r in caplog.records)
    names = " ".join(p.name for p in results.secondary_capture.parent.rglob("*"))
    for secret in secrets:
        assert secret not in seen and secret not in names
    assert results.withheld_warnings == 0


def test_a_multi_frame_source_is_referenced_by_its_first_frame(study):
    header = pydicom.dcmread(study["source"], stop_before_pixels=True)
    header.NumberOfFrames = 2  # the pipeline reads frame 1 of a multi-frame image
    sc, sr, _ = build_dicom_results(DicomSource(header), study["overlay"], study["findings"])
    assert sc.SourceImageSequence[0].ReferencedFrameNumber == 1
    refs = [e.value for e in sr.iterall() if e.keyword == "ReferencedFrameNumber"]
    assert refs and all(int(v) == 1 for v in refs)


def test_the_writers_import_without_torch_or_ultralytics():
    code = (
        "import sys, olvf.runtime.writers; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'ultralytics')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_findings_refuse_values_that_would_misreport():
    probabilities = {"normal": 0.2, "old": 0.3, "fresh": 0.5}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        VertebraFinding("L1", (0, 0, 10, 10), "fresh", {**probabilities, "fresh": 1.3}, "centre")
    with pytest.raises(ValueError, match="prediction"):
        VertebraFinding("L1", (0, 0, 10, 10), "acute", probabilities, "centre")
    with pytest.raises(ValueError, match="level"):
        VertebraFinding("S1", (0, 0, 10, 10), "fresh", probabilities, "centre")
    with pytest.raises(ValueError, match="box"):
        VertebraFinding("L1", (10, 0, 5, 10), "fresh", probabilities, "centre")
    with pytest.raises(ValueError, match="keys"):
        VertebraFinding("L1", (0, 0, 10, 10), "fresh", {"normal": 0.5, "fresh": 0.5}, "centre")
