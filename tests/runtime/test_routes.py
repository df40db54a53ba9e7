"""Reduced-precision routes: recorded only as a check's result, trusted only on the CPU kind and graphs they were
checked on, chosen by auto after the GPU routes and before ONNX Runtime FP32, and named in every report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import import_openvino_or_skip

import olvf
from olvf.errors import BundleError
from olvf.runtime.bundle import tolerances
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.bundle.manifest import seal_manifest
from olvf.runtime.checks.routes import compare_studies, correlation, judge, verify_demo_route
from olvf.runtime.runners.cpu import cpu_kind
from olvf.runtime.runners.verified_routes import record_verified_route

import_openvino_or_skip()

FIGURES = {"decision_agreement": 1.0, "mri_changed": 0, "gradcam_min_r": 0.99, "speedup": 3.1}


@pytest.fixture
def int8_copy(tiny_int8_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_int8_bundle, tmp_path / "bundle"))


def _edit(bundle: Path, edit) -> None:
    path = bundle / "manifest.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(seal_manifest(raw))  # as olvf writes it: a hand edit would fail the integrity check


def test_auto_runs_onnx_runtime_fp32_until_a_route_is_verified(int8_copy: Path) -> None:
    with olvf.load(int8_copy, device="cpu") as rt:
        assert (rt.backend, rt.precision) == ("onnxruntime", "fp32")
        assert "reduced precision on CPU: none verified for this bundle" in rt.selection.why
        assert rt.selection.verified is None


def test_a_verified_route_is_recorded_and_auto_runs_it_with_its_figures(int8_copy: Path) -> None:
    from olvf.runtime.writers.report import report_context

    manifest = record_verified_route(int8_copy, "openvino-int8", FIGURES, evidence="120 labelled films (sha256 ab12)")
    (record,) = manifest.verified_routes
    assert record.cpu == cpu_kind() and record.precision == "int8" and record.figures == FIGURES
    assert set(record.graphs) == set(manifest.graph("ensemble", "int8").members)
    assert open_bundle(int8_copy).manifest == manifest, "written to the bundle"
    with olvf.load(int8_copy, device="cpu") as rt:
        assert (rt.backend, rt.precision) == ("openvino", "int8")
        assert rt.selection.chosen == "OpenVINO INT8 on CPU (verified)"
        backend = report_context(rt, "bundle").backend
    assert backend["verification"]["evidence"] == "120 labelled films (sha256 ab12)"
    assert backend["verification"]["figures"]["decision_agreement"] == 1.0
    assert "openvino-int8 verified" in backend["verification"]["summary"]


def test_recording_again_replaces_the_record_for_this_cpu(int8_copy: Path) -> None:
    record_verified_route(int8_copy, "openvino-int8", FIGURES, evidence="first")
    manifest = record_verified_route(int8_copy, "openvino-int8", FIGURES, evidence="second")
    assert [r.evidence for r in manifest.verified_routes] == ["second"]


def test_a_route_verified_on_another_kind_of_cpu_is_not_run(int8_copy: Path) -> None:
    record_verified_route(int8_copy, "openvino-int8", FIGURES, evidence="elsewhere")
    _edit(int8_copy, lambda raw: raw["verified_routes"][0]["cpu"].update(isa=["avx2", "amx_int8"]))
    with olvf.load(int8_copy, device="cpu") as rt:
        assert rt.backend == "onnxruntime"
        assert "openvino-int8: verified on another kind of CPU" in rt.selection.why


def test_a_route_whose_graphs_changed_is_not_run(int8_copy: Path) -> None:
    record_verified_route(int8_copy, "openvino-int8", FIGURES, evidence="before")

    def tamper(raw):
        route = raw["verified_routes"][0]
        route["graphs"] = {name: "0" * 64 for name in route["graphs"]}

    _edit(int8_copy, tamper)
    with olvf.load(int8_copy, device="cpu") as rt:
        assert rt.backend == "onnxruntime" and "its graphs changed since it was verified" in rt.selection.why


def test_an_explicit_precision_is_not_overruled_by_a_verified_route(int8_copy: Path) -> None:
    record_verified_route(int8_copy, "openvino-int8", FIGURES, evidence="test")
    with olvf.load(int8_copy, precision="fp32", device="cpu") as rt:
        assert (rt.backend, rt.precision) == ("onnxruntime", "fp32")
        assert "reduced precision on CPU: --precision fp32 was asked" in rt.selection.why


def test_a_verified_route_that_cannot_start_here_falls_back_with_its_reason(int8_copy: Path, monkeypatch) -> None:
    from fake_cpu import use_cpu_kind

    use_cpu_kind(monkeypatch, "intel-no-bf16")
    # Recorded with this CPU's kind but by another olvf that could run BF16 (a record says nothing of the runtime).
    record_verified_route(int8_copy, "openvino-bf16", {**FIGURES, "speedup": 9.0}, evidence="test")
    record_verified_route(int8_copy, "openvino-int8", FIGURES, evidence="test")
    with olvf.load(int8_copy, device="cpu") as rt:
        assert (rt.backend, rt.precision) == ("openvino", "int8"), "the fastest recorded route that starts"
        (label, reason), *_ = [p for p in rt.selection.passed_over if "BF16" in p[0]]
        assert "no native BF16" in reason


def test_only_reduced_precision_routes_are_recorded(int8_copy: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="computes in FP32 and needs no verification"):
        record_verified_route(int8_copy, "openvino-fp32", FIGURES, evidence="test")
    with pytest.raises(BundleError, match="unknown route 'openvino-int4'"):
        record_verified_route(int8_copy, "openvino-int4", FIGURES, evidence="test")
    plain = Path(shutil.copytree(tiny_bundle, tmp_path / "plain"))
    with pytest.raises(BundleError, match="no int8 ensemble graph for openvino-int8"):
        record_verified_route(plain, "openvino-int8", FIGURES, evidence="test")


def test_schema_2_manifests_without_the_new_fields_still_load(int8_copy: Path, tiny_bundle: Path) -> None:
    """Bundles exported before INT8 graphs and verified routes existed."""
    plain = json.loads((tiny_bundle / "manifest.json").read_text())
    for graph in plain["graphs"]:
        for key in ("format", "weights", "quantization"):
            graph.pop(key)
    plain.pop("verified_routes")
    from olvf.runtime.bundle.manifest import manifest_from_dict

    manifest = manifest_from_dict(plain)
    assert manifest.schema_version == 2 and manifest.verified_routes == ()
    assert {g.format for g in manifest.graphs} == {"onnx"} and all(g.members == (g.file,) for g in manifest.graphs)
    # and an IR graph that lost its weights file is refused, not half-read
    _edit(int8_copy, lambda raw: [g.update(weights="") for g in raw["graphs"] if g["precision"] == "int8"])
    with pytest.raises(BundleError, match="OpenVINO IR graph names its weights file"):
        open_bundle(int8_copy)


def test_limits_are_the_issues_figures_and_each_one_fails_a_route() -> None:
    good = {
        "decision_agreement": 0.995,
        "vertebrae_not_matched": 0,
        "mri_changed": 0,
        "gradcam_min_r": 0.98,
        "metric_change": {"accuracy": -0.01, "fresh_sensitivity": 0.0},
    }
    assert judge("openvino-bf16", good) == ()
    assert tolerances.ROUTES["openvino-int8"].decision_agreement == 0.99
    for key, bad in (
        ("decision_agreement", 0.994),
        ("vertebrae_not_matched", 1),
        ("mri_changed", 1),
        ("gradcam_min_r", 0.979),
        ("metric_change", {"accuracy": 0.02}),
    ):
        assert len(judge("openvino-bf16", {**good, key: bad})) == 1, key


@pytest.mark.parametrize(
    "key, unmeasured, phrase",
    [
        ("metric_change", {"accuracy": 0.0, "fresh_sensitivity": None}, "fresh sensitivity not measurable"),
        ("metric_change", {"accuracy": float("nan"), "fresh_sensitivity": 0.0}, "accuracy not measurable"),
        ("decision_agreement", None, "decision agreement not measurable"),
        ("gradcam_min_r", None, "Grad-CAM agreement not measurable"),
    ],
)
def test_a_figure_that_could_not_be_measured_fails_the_route(key, unmeasured, phrase) -> None:
    """A NaN compares false with every limit: it passed the gate before, with no evidence at all."""
    good = {
        "decision_agreement": 1.0,
        "vertebrae_not_matched": 0,
        "mri_changed": 0,
        "gradcam_min_r": 1.0,
        "metric_change": {"accuracy": 0.0, "fresh_sensitivity": 0.0},
    }
    (problem,) = judge("openvino-int8", {**good, key: unmeasured})
    assert problem.startswith(phrase) and "at least 20 vertebrae of each class" in problem


def test_no_fresh_vertebra_gives_an_unmeasurable_figure_not_nan() -> None:
    from olvf.runtime.checks.routes import _metrics

    assert _metrics(["normal", "old"], ["normal", "old"]) == {"accuracy": 1.0, "fresh_sensitivity": None}
    assert _metrics([], []) == {"accuracy": None, "fresh_sensitivity": None}


def test_a_route_with_an_unmeasured_figure_is_never_recorded(int8_copy: Path) -> None:
    before = (int8_copy / "manifest.json").read_bytes()
    for bad in (float("nan"), float("inf"), np.float32("nan")):
        figures = {**FIGURES, "metric_change": {"accuracy": 0.0, "fresh_sensitivity": bad}}
        with pytest.raises(BundleError, match=r"figures.metric_change.fresh_sensitivity could not be measured"):
            record_verified_route(int8_copy, "openvino-int8", figures, evidence="test")
    assert (int8_copy / "manifest.json").read_bytes() == before


def test_the_phantom_check_set_is_sized_before_any_study_runs(monkeypatch) -> None:
    from olvf.errors import UsageError
    from olvf.phantom import make_phantom, phantom_labels
    from olvf.runtime.checks import routes as route_check

    # the labels counted before the check are the ones the phantoms are drawn with
    for seed in (5000, 5003, 5011):
        drawn = {v.level: v.label for v in make_phantom(seed, size=route_check.PHANTOM_SIZE).levels}
        assert drawn == {k: v for k, v in phantom_labels(seed).items() if k in drawn}
    needed = route_check._studies_needed(route_check.FIRST_SEED)
    route_check.check_set_size(needed)
    assert needed <= 100, "the default --studies judges"
    with pytest.raises(UsageError, match=rf"{needed - 1} phantom studies hold .* check with --studies {needed}"):
        route_check.check_set_size(needed - 1)
    monkeypatch.setattr(route_check, "open_runtime", lambda *a, **k: pytest.fail("a study ran"))
    with pytest.raises(UsageError):  # before it opens a runtime, or even looks at the bundle
        route_check.check_route(None, "openvino-int8", studies=3)  # type: ignore[arg-type]


def test_map_correlation() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((3, 8, 8))
    assert np.allclose(correlation(maps, maps), 1.0)
    assert np.allclose(correlation(maps, -maps), -1.0)
    flat = np.zeros((1, 8, 8))
    assert correlation(flat, flat)[0] == 1.0 and correlation(flat, maps[:1])[0] == 0.0
    assert correlation(maps[:0], maps[:0]).shape == (0,)  # no vertebra where both routes show the same class


def test_studies_compared_with_themselves_agree_and_fp16_stays_close(cascade_bundle: Path) -> None:
    from olvf.runtime.checks.verify import phantom_image

    image, phantom = phantom_image(2)
    truth = {v.level: v.label for v in phantom.levels}
    with (
        olvf.load(cascade_bundle, backend="onnxruntime", precision="fp32") as fp32,
        olvf.load(cascade_bundle, backend="onnxruntime", precision="fp16") as fp16,
    ):
        reference = fp32.analyse([image, image[::-1].copy()])
        same = compare_studies(reference, fp32.analyse([image, image[::-1].copy()]), [truth, truth])
        half = compare_studies(reference, fp16.analyse([image, image[::-1].copy()]), [truth, truth])
    assert same["vertebrae"] == 10 and same["decision_agreement"] == 1.0 and same["mri_changed"] == 0
    assert same["gradcam_min_r"] == pytest.approx(1.0) and same["probabilities_max_abs_diff"] == 0.0
    assert same["metric_change"]["accuracy"] == 0.0
    assert 0.9 < half["gradcam_min_r"] < 1.0 and 0 < half["probabilities_max_abs_diff"] < 1e-2


def test_the_demo_check_records_a_route_only_when_it_passes(int8_copy: Path, monkeypatch) -> None:
    monkeypatch.setattr(tolerances, "MIN_GATE_VERTEBRAE_PER_CLASS", 0)  # 3 studies, so that it runs in seconds
    result, recorded = verify_demo_route(int8_copy, "openvino-int8", studies=3)
    figures = result.figures
    assert figures["studies"] == 3 and figures["vertebrae"] == 3  # no detector: each film is one crop
    assert figures["limits"] == vars(tolerances.ROUTES["openvino-int8"]) and figures["cpu"] == cpu_kind()
    assert result.passed == (judge("openvino-int8", figures) == ())
    manifest = open_bundle(int8_copy).manifest
    if result.passed:
        assert recorded is not None and [r.route for r in manifest.verified_routes] == ["openvino-int8"]
    else:
        assert recorded is None and manifest.verified_routes == ()


def _validation(reference: str, passed: bool):
    """What olvf-validate hands over after a gate, reduced to what recording reads."""
    from types import SimpleNamespace

    from olvf.runtime.validation.compare import GateLimits

    difference = SimpleNamespace(route="openvino-int8", passed=passed, to_dict=lambda: {"class_agreement": 1.0})
    comparison = SimpleNamespace(reference=reference, differences=(difference,), limits=GateLimits())
    runs = {reference: SimpleNamespace(seconds=9.0), "openvino-int8": SimpleNamespace(seconds=3.0)}
    return SimpleNamespace(
        comparison=comparison, runs=runs, labelled=SimpleNamespace(studies=[1] * 120), context={"set": {"sha256": "ab"}}
    )


def test_olvf_validate_records_only_routes_that_passed_against_an_fp32_reference(int8_copy: Path) -> None:
    from olvf.runtime.validation.routes import record_passed_routes

    assert record_passed_routes(int8_copy, _validation("onnxruntime-fp32", passed=False)) == []
    assert record_passed_routes(int8_copy, _validation("onnxruntime-fp16", passed=True)) == []
    assert open_bundle(int8_copy).manifest.verified_routes == ()
    assert record_passed_routes(int8_copy, _validation("onnxruntime-fp32", passed=True)) == ["openvino-int8"]
    (record,) = open_bundle(int8_copy).manifest.verified_routes
    assert record.figures["speedup"] == 3.0 and "120 labelled studies" in record.evidence
