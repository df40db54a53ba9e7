"""DICOM results as a PACS would receive them: identity, pixels, findings, UIDs, files, and no patient data leaks.

Validation by independent tools (dciodvfy, PixelMed, dcmtk, Orthanc) is in test_dicom_tools.py.
"""

from __future__ import annotations

import datetime
import io
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
    LONG_IDENTITY,
    NORMAL_ON_TOP_BUT_FRESH,
    OTHER_BUNDLE_SHA,
    PATIENT_ID,
    PATIENT_NAME,
    PROBABILITIES,
    findings_for,
    no_vertebra,
    not_assessed,
    overlay_rgb,
    write_source,
)
from pydicom.sr._concepts_dict import concepts
from pydicom.sr.coding import Code
from pydicom.uid import UID, RLELossless

from olvf.errors import InputError, OutputExistsError
from olvf.runtime.steps.decision import NORMAL, OLD, SUSPECTED_FRESH
from olvf.runtime.writers import (
    NO_PATIENT_CONTEXT,
    SC_NAME,
    SR_NAME,
    Algorithm,
    DicomSource,
    NoPatientContextError,
    StudyFindings,
    VertebraFinding,
    build_dicom_results,
    dicom_sr,
    read_dicom_source,
    write_dicom_results,
)
from olvf.runtime.writers import dicom_codes as codes
from olvf.runtime.writers.dicom_results import encode
from olvf.runtime.writers.dicom_sc import DEMO_TEXT, MAX_LO, series_description
from olvf.runtime.writers.dicom_source import identity_cuts
from olvf.runtime.writers.dicom_sr import box_polyline, shown_probabilities
from olvf.runtime.writers.overlay import DEMO_BACKGROUND

JAPANESE_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"
JAPANESE_CHARSET = ["", "ISO 2022 IR 87"]
ALGORITHM_NAME, ALGORITHM_VERSION = "111001", "111003"  # TID 4019 rows


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


def built(study, findings: StudyFindings):
    """The SC and the SR of ``findings`` on the module's source, in memory, the SR as highdicom reads it."""
    sc, sr, _ = build_dicom_results(read_dicom_source(study["source"]), study["overlay"], findings)
    return sc, hd.sr.Comprehensive3DSR.from_dataset(sr)


def conclusions(sr) -> list:
    """TID 1500's Qualitative Evaluations container's items, in order."""
    (container,) = [i for i in sr.ContentSequence if i.name == codes.QUALITATIVE_EVALUATIONS]
    return list(container.ContentSequence)


def conclusion(sr, name: Code):
    (item,) = [i for i in conclusions(sr) if i.name == name]
    return item.value


def content_items(items):
    for item in items:
        yield item
        yield from content_items(item.get("ContentSequence", []))


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
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage == "1.2.840.10008.5.1.4.1.1.88.34"  # IHE AIR


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


def test_both_objects_have_series_content_and_creation_date_time_of_one_moment(study):
    before = datetime.datetime.now()
    sc, sr, _ = build_dicom_results(read_dicom_source(study["source"]), study["overlay"], study["findings"])
    after = datetime.datetime.now()
    stamps = set()
    for ds in (sc, sr):
        for what in ("Series", "Content", "InstanceCreation"):
            date, time = ds[f"{what}Date"].value, ds[f"{what}Time"].value
            stamps.add((str(date), str(time)))
    ((date, time),) = stamps  # Orthanc files a series without Series Date under "?": both carry it, the same
    when = datetime.datetime.strptime(f"{date}{time}", "%Y%m%d%H%M%S.%f")
    assert before <= when <= after


def test_olvf_is_the_contributing_equipment_that_the_sr_names_as_its_algorithm(study):
    """IHE AIR: Processing Equipment with Manufacturer, Model Name, Software Versions and Device UID, equal to
    TID 4019's Algorithm Name and Version and to TID 1004's Device Observer UID."""
    sc, sr = study["sc"], study["sr"]
    observer_uid = next(str(i.value) for i in sr.ContentSequence if i.name.value == "121012")  # TID 1004
    names, versions = set(), set()
    for item in content_items(sr.ContentSequence):
        if item.name.value == ALGORITHM_NAME:
            names.add(item.value)
        elif item.name.value == ALGORITHM_VERSION:
            versions.add(item.value)
    assert names == {"olvf"} and versions == {"0.1.0"}
    for ds in (sc, sr):
        (equipment,) = ds.ContributingEquipmentSequence  # olvf alone: no second Processing Equipment to guess from
        assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
        assert equipment.PurposeOfReferenceCodeSequence[0].CodingSchemeDesignator == "DCM"
        assert equipment.Manufacturer == ds.Manufacturer == "olvf"
        assert equipment.ManufacturerModelName == ds.ManufacturerModelName == "olvf" and "olvf" in names
        assert equipment.SoftwareVersions == ds.SoftwareVersions == "0.1.0" and "0.1.0" in versions
        assert equipment.DeviceUID == observer_uid and UID(observer_uid).is_valid
        assert BUNDLE_SHA in equipment.ContributionDescription and "DEMO" in equipment.ContributionDescription


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
    # The 1200 x 960 film's overlay is taller (header band): shrunk to fit the source, aspect kept.
    assert (sc.Rows, sc.Columns) == (1200, round(960 * 1200 / overlay.shape[0]))
    expected = cv2.resize(overlay, (sc.Columns, sc.Rows), interpolation=cv2.INTER_AREA)
    assert np.array_equal(sc.pixel_array, expected)
    assert sc.DerivationCodeSequence[0].CodeValue == "113085"  # spatial resampling, said so


def test_secondary_capture_is_rle_lossless_and_smaller_than_its_pixels(study):
    sc = study["sc"]
    assert sc.file_meta.TransferSyntaxUID == RLELossless == "1.2.840.10008.1.2.5"
    assert sc.LossyImageCompression == "00" and "LossyImageCompressionRatio" not in sc
    frames = list(pydicom.encaps.generate_frames(sc.PixelData, number_of_frames=1))
    assert len(frames) == 1 and len(frames[0]) < sc.Rows * sc.Columns * 3  # lossless: test above, pixel for pixel
    assert study["results"].secondary_capture.stat().st_size < sc.Rows * sc.Columns * 3


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
    sc = pydicom.dcmread(io.BytesIO(encode(sc)))
    assert sc.file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(sc.pixel_array, gray[..., 0])


def test_the_capture_says_the_verdict_in_the_decisions_words(study):
    sc, findings = study["sc"], study["findings"]
    decision = findings.decision
    assert sc.SeriesDescription == "DEMO - olvf: suspected fresh fracture L2 - MRI recommended"
    assert sc.ImageComments.startswith(DEMO_TEXT)  # DEMO first
    assert decision.headline in sc.ImageComments and decision.line in sc.ImageComments


# --- Structured Report ----------------------------------------------------------------------------


def test_highdicom_reads_back_every_vertebra_with_its_state(study):
    sr, findings, header, sc = study["sr"], study["findings"], study["header"], study["sc"]
    groups = sr.content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [v.level for v in findings.vertebrae]
    assert len({g.tracking_uid for g in groups}) == len(groups)
    assert [v.state for v in findings.vertebrae] == [NORMAL, NORMAL, SUSPECTED_FRESH, NORMAL, NORMAL, NORMAL]
    for group, vertebra in zip(groups, findings.vertebrae):
        (site,) = group.finding_sites
        assert site.value == codes.LEVEL_SITES[vertebra.level]
        assert group.finding_type == codes.STATE_VALUES[vertebra.state]  # the decision's state, the region's Finding
        assert group.get_qualitative_evaluations() == []  # no top class beside the state to contradict it
        measured = {m.name.value: m for m in group.get_measurements()}
        shown = shown_probabilities(vertebra, findings.operating_point)
        for name, p in shown.items():
            m = measured[codes.PROBABILITY_NAMES[name].value]
            assert m.value == pytest.approx(100 * p, abs=1e-9) and m.unit.value == "%"
            assert p == pytest.approx(vertebra.probabilities[name], abs=0.005)
        assert measured[codes.DETECTOR_SCORE.value].value == pytest.approx(100 * round(vertebra.detector_score, 2))
        roi = group.roi
        assert roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        assert np.allclose(roi.value, box_polyline(vertebra.box)) and np.array_equal(roi.value[0], roi.value[-1])
        (image,) = roi.ContentSequence  # "selected from" the source image
        assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == header.SOPInstanceUID
        (illustration,) = [i for i in group[0].ContentSequence if i.name == codes.ILLUSTRATION_OF_ROI]
        assert illustration.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sc.SOPInstanceUID
        algorithm = {i.name.value: i.value for i in group[0].ContentSequence if i.name.value == ALGORITHM_NAME}
        assert algorithm[ALGORITHM_NAME] == "olvf"


def test_every_group_is_a_region_and_the_conclusions_say_the_verdict(study):
    """OHIF opens nothing of an SR with a measurement group that has no image region (tests/viewer): every group
    is a vertebra's region, and the operating point travels in each group's algorithm parameters."""
    sr, findings = study["sr"], study["findings"]
    assert sr.content.get_image_measurement_groups() == []
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == len(findings.vertebrae)
    for group in groups:
        parameters = [
            i.value for i in group[0].ContentSequence if i.name.value == "111002"
        ]  # TID 4019 Algorithm Parameters
        assert parameters[0].startswith("DEMO")
        assert f"fresh fracture operating point {findings.operating_point:g}" in parameters
    items = conclusions(sr)
    assert [(i.name, i.value) for i in items[:2]] == [
        (codes.DEMO_WARNING, codes.DEMO),
        (codes.MRI_RECOMMENDED, codes.YES),
    ]
    assert (
        conclusion(sr, codes.RECOMMENDATION)
        == findings.decision.headline
        == "Suspected fresh fracture at L2: MRI recommended"
    )
    assert conclusion(sr, codes.MRI_REASON) == findings.mri_reason
    assert sr.SeriesDescription == "DEMO - olvf: suspected fresh fracture L2 - MRI recommended"


def test_every_container_is_separate_so_each_value_shows_under_its_name(study):
    sr = study["sr"]
    containers = [i for i in content_items(sr.ContentSequence) if i.ValueType == "CONTAINER"]
    assert len(containers) == 1 + len(study["findings"].vertebrae) + 1  # measurements, groups, conclusions
    assert sr.ContinuityOfContent == "SEPARATE" and {c.ContinuityOfContent for c in containers} == {"SEPARATE"}


def test_a_top_class_normal_over_the_operating_point_is_a_suspected_fresh_fracture(study):
    """The issue's phantom 5017: L3 top class "normal", p(fresh) 0.49 >= 0.31; the SR and SC must send it to MRI
    with the decision's levels, never call it normal."""
    findings = findings_for(study["phantom"], operating_point=0.31, probabilities={"L3": NORMAL_ON_TOP_BUT_FRESH})
    assert findings.mri_levels == ("L2", "L3")
    sc, sr = built(study, findings)
    states = {g.tracking_identifier: g.finding_type for g in sr.content.get_planar_roi_measurement_groups()}
    assert states["L3"] == states["L2"] == codes.STATE_VALUES[SUSPECTED_FRESH]
    assert [lvl for lvl, code in states.items() if code == codes.STATE_VALUES[SUSPECTED_FRESH]] == ["L2", "L3"]
    assert conclusion(sr, codes.RECOMMENDATION) == "Suspected fresh fracture at L2, L3: MRI recommended"
    assert "L3 (p(fresh) 0.49)" in conclusion(sr, codes.MRI_REASON)
    assert (
        sc.SeriesDescription == sr.SeriesDescription == "DEMO - olvf: suspected fresh fracture L2, L3 - MRI recommended"
    )
    assert "Suspected fresh fracture at L2, L3: MRI recommended" in sc.ImageComments


@pytest.mark.parametrize(
    ("probabilities", "fresh", "old", "normal"),
    [
        ({"normal": 0.861234, "old": 0.091, "fresh": 0.047766}, 0.05, 0.09, 0.86),  # two decimals say it all
        ({"normal": 0.6805, "old": 0.0104, "fresh": 0.3091}, 0.309, 0.01, 0.68),  # 0.31 would read as "at" 0.31
        ({"normal": 0.3539, "old": 0.3521, "fresh": 0.294}, 0.29, 0.352, 0.354),  # old vs normal needs a third
        ({"normal": 0.5, "old": 0.19, "fresh": 0.31}, 0.31, 0.19, 0.5),  # exactly at the operating point: as it is
    ],
    ids=["plain", "fresh-near-operating-point", "old-near-normal", "fresh-at-operating-point"],
)
def test_probabilities_are_rounded_to_what_they_mean(probabilities, fresh, old, normal):
    vertebra = VertebraFinding("L3", (1, 1, 9, 9), NORMAL, probabilities)
    shown = shown_probabilities(vertebra, 0.31)
    assert shown == {"fresh": fresh, "old": old, "normal": normal}
    assert (shown["fresh"] >= 0.31) is (probabilities["fresh"] >= 0.31)  # the number reads as the rule decided
    assert (shown["old"] > shown["normal"]) is (probabilities["old"] > probabilities["normal"])


def ohif_label(item) -> str:
    """A NUM's value as OHIF 3.13 labels it on the image: two decimals and its unit's code, no number for 0."""
    measured = item.MeasuredValueSequence[0]
    value = float(measured.NumericValue)
    return (
        f"{value:.2f} {measured.MeasurementUnitsCodeSequence[0].CodeValue}"
        if value
        else f" {measured.MeasurementUnitsCodeSequence[0].CodeValue}"
    )


def test_identity_values_longer_than_their_vr_are_cut_in_the_results_and_named(study, tmp_path):
    source, phantom = write_source(tmp_path / "long.dcm", size=(600, 480), **LONG_IDENTITY)
    header = read_dicom_source(source).header
    assert identity_cuts(header) == ("PatientName", "PatientID", "StudyDescription")
    assert identity_cuts(read_dicom_source(study["source"]).header) == ()
    findings = findings_for(phantom)
    sc, sr, _ = build_dicom_results(read_dicom_source(source), overlay_rgb(source, findings), findings)
    for ds in (sc, sr):
        assert ds.PatientID == LONG_IDENTITY["patient_id"][:64]
        assert str(ds.PatientName) == LONG_IDENTITY["patient_name"][:59] + "^Anna"  # the family name shortened
        assert ds.StudyDescription == LONG_IDENTITY["study_description"][:64]
        assert identity_cuts(ds) == ()
    assert header.PatientID == LONG_IDENTITY["patient_id"]  # the source is left as it is


def test_a_viewer_that_drops_a_zero_shows_no_false_number(study):
    """OHIF leaves a value of 0 out and prints the unit's code: in UCUM "1", p(fresh) 0 read "...: 1"."""
    certain = {"normal": 1.0, "old": 0.0, "fresh": 0.0}
    findings = findings_for(study["phantom"], probabilities={"L1": certain})
    _, sr = built(study, findings)
    (group,) = [g for g in sr.content.get_planar_roi_measurement_groups() if g.tracking_identifier == "L1"]
    labels = {i.name.value: ohif_label(i) for i in group[0].ContentSequence if i.ValueType == "NUM"}
    assert labels[codes.PROBABILITY_NAMES["fresh"].value] == labels[codes.PROBABILITY_NAMES["old"].value] == " %"
    assert labels[codes.PROBABILITY_NAMES["normal"].value] == "100.00 %"
    for fraction, percent in ((0.49, 49.0), (0.309, 30.9), (0.352, 35.2), (0.07, 7.0)):  # no binary noise
        assert dicom_sr.percent(codes.PROBABILITY_NAMES["fresh"], fraction).value == percent


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
    template = {(c.scheme_designator, c.value, c.meaning) for c in codes.TEMPLATE_CODES}
    meanings: dict[tuple[str, str], set[str]] = {}
    for scheme, table in concepts.items():
        for entries in table.values():
            for value, (meaning, _) in entries.items():
                meanings.setdefault((scheme, value), set()).add(meaning)
    used = set(_codes(sr))
    assert any(c in private for c in used) and template <= used
    # Standard codes must exist in PS3.16 (as pydicom bundles it); highdicom's template codes may word their
    # meaning as the template does. RFC 5646 tags (en-US) are not in PS3.16; template concept names that no
    # context group lists are declared one by one (dicom_codes.TEMPLATE_CODES).
    unknown = {c for c in used if c not in private | template and c[:2] not in meanings and c[0] != "RFC5646"}
    assert not unknown
    ours = [v for v in vars(codes).values() if isinstance(v, Code) and v.scheme_designator != codes.SCHEME]
    ours = [c for c in ours if c not in codes.TEMPLATE_CODES] + list(codes.LEVEL_SITES.values())
    for code in ours:  # the codes olvf chose carry DICOM's own meaning
        assert code.meaning in meanings[code.scheme_designator, code.value]
    (scheme,) = sr.CodingSchemeIdentificationSequence
    assert (scheme.CodingSchemeDesignator, scheme.CodingSchemeVersion) == (codes.SCHEME, codes.SCHEME_VERSION)
    assert scheme.CodingSchemeName and scheme.CodingSchemeResponsibleOrganization
    assert all(len(c.value) <= 16 and len(c.meaning) <= 64 for c in codes.PRIVATE_CODES)  # SH and LO


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


def test_unnamed_levels_and_no_vertebra_are_reported_without_guessed_sites(study):
    phantom = study["phantom"]
    unnamed = findings_for(phantom, levels=False)
    _, sr = built(study, unnamed)
    groups = sr.content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [f"V{i + 1}" for i in range(len(phantom.levels))]
    assert all(g.finding_sites == [] for g in groups)
    assert conclusion(sr, codes.RECOMMENDATION) == "Suspected fresh fracture at V3: MRI recommended"
    sc, sr = built(study, no_vertebra(unnamed))
    assert sr.content.get_planar_roi_measurement_groups() == sr.content.get_image_measurement_groups() == []
    assert codes.IMAGING_MEASUREMENTS not in [item.name for item in sr.ContentSequence]  # no empty container
    assert conclusion(sr, codes.MRI_RECOMMENDED) == codes.NO
    assert conclusion(sr, codes.RECOMMENDATION) == "No vertebral body found: the film needs a reader"
    assert sc.SeriesDescription == "DEMO - olvf: no vertebral body found - the film needs a reader"


def test_a_study_that_was_not_assessed_says_so_and_why_with_no_findings(study):
    findings = not_assessed(findings_for(study["phantom"], demo=False))
    sc, sr = built(study, findings)
    assert sr.content.get_planar_roi_measurement_groups() == []
    assert conclusion(sr, codes.MRI_RECOMMENDED) == codes.NOT_ASSESSED  # never NO: no negative finding
    assert conclusion(sr, codes.RECOMMENDATION) == "NOT ASSESSED, no verdict: the film needs a reader"
    assert conclusion(sr, codes.MRI_REASON) == "Body Part Examined is CHEST"
    for ds in (sc, sr):
        assert ds.SeriesDescription == "NOT ASSESSED - olvf: no verdict - the film needs a reader"
    assert sc.ImageComments.startswith("NOT ASSESSED") and "Body Part Examined is CHEST" in sc.ImageComments


def test_findings_given_outside_the_intended_use_say_so(study):
    assessed = findings_for(study["phantom"])
    findings = StudyFindings(
        assessed.vertebrae,
        assessed.mri_recommended,
        assessed.mri_reason,
        assessed.operating_point,
        assessed.demo,
        assessed.algorithm,
        outside_intended_use="Body Part Examined is CHEST",
    )
    sc, sr = built(study, findings)
    assert conclusion(sr, codes.OUTSIDE_INTENDED_USE) == "Body Part Examined is CHEST"
    for ds in (sc, sr):
        assert ds.SeriesDescription.startswith("DEMO - OUTSIDE USE - olvf: suspected fresh")
    assert sc.ImageComments.startswith(DEMO_TEXT + "; OUTSIDE INTENDED USE (research override)")


@pytest.mark.parametrize("levels", [("L3",), ("L3", "L4"), ("T12", "L1", "L2", "L3", "L4", "L5")])
@pytest.mark.parametrize("prefix", ["", "DEMO - ", "DEMO - OUTSIDE USE - "])
def test_series_descriptions_name_the_levels_where_a_long_string_holds_them(levels, prefix):
    fresh = PROBABILITIES["fresh"]
    vertebrae = tuple(VertebraFinding(lvl, (1, 1, 9, 9), SUSPECTED_FRESH, fresh) for lvl in levels)
    findings = StudyFindings(
        vertebrae,
        True,
        "why",
        0.5,
        demo=prefix.startswith("DEMO"),
        algorithm=algorithm(),
        outside_intended_use="override" if "OUTSIDE" in prefix else None,
    )
    for kind in ("overlay", "findings SR"):
        text = series_description(kind, findings)
        assert text.startswith(prefix + "olvf: ") and len(text) <= MAX_LO
        assert text.endswith("MRI recommended") or text.endswith(f"({len(levels)} suspected fresh)")
    full = f"{prefix}olvf: suspected fresh fracture {', '.join(levels)} - MRI recommended"
    if len(full) <= MAX_LO:  # the brief's wording wherever it fits
        assert text == full


def algorithm() -> Algorithm:
    return Algorithm("olvf", "0.1.0", BUNDLE_SHA, "onnxruntime CPUExecutionProvider fp32")


def test_a_negative_study_says_mri_is_not_indicated(study):
    phantom = study["phantom"]
    findings = findings_for(phantom, probabilities={"L2": PROBABILITIES["old"]}, demo=False)
    assert findings.mri_levels == () and findings.mri_recommended is False
    sc, sr = built(study, findings)
    assert {g.finding_type for g in sr.content.get_planar_roi_measurement_groups()} == {
        codes.STATE_VALUES[NORMAL],
        codes.STATE_VALUES[OLD],
    }
    assert conclusion(sr, codes.MRI_RECOMMENDED) == codes.NO
    assert conclusion(sr, codes.RECOMMENDATION) == "No suspected fresh fracture: MRI not indicated by olvf"
    assert sc.SeriesDescription == "olvf: no suspected fresh fracture - MRI not indicated"
    assert codes.DEMO_WARNING not in [i.name for i in conclusions(sr)]


# --- DEMO -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("demo", [True, False])
def test_a_demo_bundle_says_so_first_in_series_sr_and_pixels_and_a_real_one_does_not(study, demo):
    source = read_dicom_source(study["source"])
    findings = findings_for(study["phantom"], demo=demo)
    sc, sr, _ = build_dicom_results(source, overlay_rgb(study["source"], findings), findings)
    assert sc.SeriesDescription.startswith("DEMO - ") is demo and sr.SeriesDescription.startswith("DEMO - ") is demo
    texts = [e.value for e in sr.iterall() if e.keyword == "TextValue"]
    assert any("DEMO" in t for t in texts) is demo
    sr = hd.sr.Comprehensive3DSR.from_dataset(sr)
    assert (conclusions(sr)[0].name == codes.DEMO_WARNING) is demo  # the first conclusion
    groups = sr.content.get_planar_roi_measurement_groups()
    assert groups
    for group in groups:
        parameters = [i.value for i in group[0].ContentSequence if i.name.value == "111002"]
        assert (parameters[0] == DEMO_TEXT) is demo  # the first algorithm parameter
    assert sc.ImageComments.startswith(DEMO_TEXT) is demo
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
        groups = hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_planar_roi_measurement_groups()
        tracking = [g.tracking_uid for g in groups]
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
    probabilities = study["findings"].vertebrae[0].probabilities
    outside = VertebraFinding("L1", (10.0, 10.0, columns + 5.0, 50.0), NORMAL, probabilities)
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
    made_by = algorithm()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        VertebraFinding("L1", (0, 0, 10, 10), SUSPECTED_FRESH, {**probabilities, "fresh": 1.3})
    with pytest.raises(ValueError, match="state"):
        VertebraFinding("L1", (0, 0, 10, 10), "fresh", probabilities)  # a class is no state
    with pytest.raises(ValueError, match="level"):
        VertebraFinding("S1", (0, 0, 10, 10), SUSPECTED_FRESH, probabilities)
    with pytest.raises(ValueError, match="box"):
        VertebraFinding("L1", (10, 0, 5, 10), SUSPECTED_FRESH, probabilities)
    with pytest.raises(ValueError, match="keys"):
        VertebraFinding("L1", (0, 0, 10, 10), SUSPECTED_FRESH, {"normal": 0.5, "fresh": 0.5})
    fresh = VertebraFinding("L1", (0, 0, 10, 10), SUSPECTED_FRESH, probabilities)
    with pytest.raises(ValueError, match="one rule"):  # MRI and the states must agree
        StudyFindings((fresh,), False, "why", 0.5, False, made_by)
    with pytest.raises(ValueError, match="one rule"):
        StudyFindings((), True, "why", 0.5, False, made_by)
    with pytest.raises(ValueError, match="not assessed"):
        StudyFindings((fresh,), None, "why", 0.5, False, made_by)
