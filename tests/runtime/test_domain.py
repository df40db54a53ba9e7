"""The bundle's own domain: fitted, stored and verified like every bundle file, and telling phantoms from the rest.

Two parts. The first runs on the tiny bundle (no detector: each image is one
crop) with vertebra crops cut from small phantoms as its "radiographs": the
statistics round-trip, are checked against their sha256, and a file that
does not fit the bundle is refused in one line. The second runs on the demo
bundle (its domain fitted on phantoms at export): held-out phantoms lie
within the threshold, images that are no lateral lumbar radiograph beyond it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import olvf
from olvf.errors import BundleError, InputError, ParityError, UsageError
from olvf.export import domain as fitting
from olvf.phantom import make_phantom, phantom_display
from olvf.runtime.bundle.config import CropSettings
from olvf.runtime.bundle.domain import METHOD, ModelStatistics, load_domain, statistics_bytes
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.bundle.manifest import manifest_from_dict, seal_manifest
from olvf.runtime.bundle.updates import update_manifest
from olvf.runtime.steps.crops import extract_crops

needs_ultralytics = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None,
    reason="the demo detector is built with ultralytics: pip install 'olvf[export]'",
)


# --------------------------------------------------------------------------- the tiny bundle


def _vertebra_crops(folder: Path, phantoms: range, size: tuple[int, int] = (700, 560)) -> Path:
    """Every level of each phantom cut with the runtime's crop rule, saved as 8-bit PNG: one 'study' per crop."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in phantoms:
        phantom = make_phantom(seed, size=size)
        image = phantom_display(phantom)
        boxes = np.array([level.box for level in phantom.levels], np.float32)
        for level, crop in zip(phantom.levels, extract_crops(image, boxes, CropSettings())):
            crop = cv2.resize(crop, (96, 96), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(folder / f"patient-{seed}-{level.level}.png"), np.rint(crop * 255).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def crop_folder(tmp_path_factory) -> Path:
    return _vertebra_crops(tmp_path_factory.mktemp("domain") / "crops", range(3000, 3008))  # 48 crops


@pytest.fixture(scope="module")
def tiny_domain_bundle(tmp_path_factory, tiny_bundle: Path, crop_folder: Path) -> Path:
    out = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("domain") / "bundle"))
    fitting.add_domain(out, crop_folder, progress=lambda _line: None)
    return out


def test_the_domain_is_recorded_and_listed_like_every_file(tiny_domain_bundle: Path) -> None:
    manifest = open_bundle(tiny_domain_bundle).manifest
    spec = manifest.domain
    assert spec is not None and spec.method == METHOD and spec.version == 1
    assert spec.file in manifest.files and (tiny_domain_bundle / spec.file).is_file()
    assert spec.models == manifest.model_names and all(m.features_output for m in manifest.models)
    assert spec.fitted_on["source"] == "radiograph folder" and spec.fitted_on["images"] == 48
    held = spec.held_out
    assert held["studies"] + spec.fitted_on["studies"] == 48 and held["studies"] >= 1
    assert held["false_rejection_aimed"] == 0.01 and 0.0 <= held["false_rejection_measured"] <= 1.0
    assert spec.threshold > 0 and "percentile" in spec.threshold_rule
    # Counts and hashes, never a file name: names of clinical files can identify patients.
    assert "patient-" not in json.dumps(dataclasses.asdict(spec))


def test_statistics_round_trip_and_reproduce_the_fitted_distances(tiny_domain_bundle: Path, crop_folder) -> None:
    with olvf.load(tiny_domain_bundle) as rt:
        domain = rt.domain
        assert domain is not None and rt.domain is domain  # read once
        crops = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(crop_folder.iterdir())[:6]]
        result = rt.classify_crops(crops)
        assert set(result.features) == set(rt.manifest.model_names)
        assert all(
            v.shape == (6, spec.gradcam.feature_shape[0])
            for spec in rt.manifest.models
            for v in [result.features[spec.name]]
        )
        # A slice of a classification slices its features with it.
        assert result[2:4].features[rt.manifest.model_names[0]].shape[0] == 2
        distances = domain.vertebra_distances(result.features)
        empty = rt.empty_classification()
        assert domain.study_distance(domain.vertebra_distances(empty.features)) is None
    # The stored statistics are those written: a second reader computes the same distances.
    again = load_domain(open_bundle(tiny_domain_bundle))
    np.testing.assert_allclose(again.vertebra_distances(result.features), distances, rtol=1e-12)
    # The same formula by hand, for one model, from the arrays in the file (allow_pickle=False).
    name = rt.manifest.model_names[0]
    with np.load(tiny_domain_bundle / domain.spec.file, allow_pickle=False) as data:
        z = np.log(result.features[name].astype(np.float64) + data[f"{name}.offset"]) - data[f"{name}.mean"]
        v, lam = data[f"{name}.components"], data[f"{name}.eigenvalues"]
        p = z @ v.T
        r = z - p @ v
        by_hand = ((p**2 / lam).sum(1) + (r**2).sum(1) / data[f"{name}.residual_variance"]) / (len(lam) + 1)
        by_hand /= data[f"{name}.scale"]
    np.testing.assert_allclose(domain.statistics[name].distances(result.features[name]), by_hand, rtol=1e-9)


def test_a_tampered_statistics_file_is_refused(tiny_domain_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(tiny_domain_bundle, tmp_path / "bundle"))
    spec = open_bundle(bundle).manifest.domain
    path = bundle / spec.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with olvf.load(bundle) as rt, pytest.raises(BundleError, match=rf"{spec.file} does not match the sha256"):
        _ = rt.domain
    path.unlink()
    with olvf.load(bundle) as rt, pytest.raises(BundleError, match=rf"{spec.file} is missing"):
        _ = rt.domain


def _rewrite_statistics(bundle: Path, data: bytes) -> None:
    """Replace the statistics and their sha256 as olvf's own change would (so that only their content is wrong)."""
    import hashlib

    spec = open_bundle(bundle).manifest.domain
    (bundle / spec.file).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    update_manifest(bundle, lambda m: dataclasses.replace(m, files={**m.files, spec.file: digest}), "test")


@pytest.mark.parametrize(
    "damage, message",
    [
        ("not an npz", "not a readable .npz file"),
        ("wrong feature count", r"\.mean is float64 \(7,\), the bundle's model needs float \(\d+,\)"),
        ("a model missing", "do not fit the bundle's models"),
        ("negative eigenvalue", r"\.eigenvalues must be positive"),
    ],
)
def test_statistics_that_do_not_fit_the_bundle_are_refused_in_one_line(
    tiny_domain_bundle: Path, tmp_path: Path, damage: str, message: str
) -> None:
    bundle = Path(shutil.copytree(tiny_domain_bundle, tmp_path / "bundle"))
    good = load_domain(open_bundle(bundle))
    stats = dict(good.statistics)
    first = next(iter(stats))
    if damage == "not an npz":
        data = b"PK\x03\x04 not really a zip file"
    else:
        if damage == "wrong feature count":
            k = good.spec.components
            stats[first] = ModelStatistics(1e-3, np.zeros(7), np.zeros((k, 7)), np.ones(k), 1.0)
        elif damage == "a model missing":
            del stats[first]
        else:
            old = stats[first]
            stats[first] = dataclasses.replace(old, eigenvalues=-old.eigenvalues)
        data = statistics_bytes(stats)
    _rewrite_statistics(bundle, data)
    with pytest.raises(BundleError, match=message) as caught:
        load_domain(open_bundle(bundle))
    assert "\n" not in str(caught.value) and "--fit-domain" in str(caught.value)


def test_bundles_written_before_the_domain_still_load(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    raw = json.loads((bundle / "manifest.json").read_text())
    for model in raw["models"]:
        del model["features_output"]
    raw.pop("domain", None)
    (bundle / "manifest.json").write_text(seal_manifest(raw))
    manifest = manifest_from_dict(raw)
    assert manifest.domain is None and all(m.features_output is None for m in manifest.models)
    with olvf.load(bundle) as rt:
        assert rt.domain is None
        result = rt.classify_crops([np.full((40, 40), 0.5, np.float32)])
        assert result.features == {} and len(result) == 1
    with pytest.raises(BundleError, match="re-export the bundle"):
        fitting.add_domain(bundle, tmp_path, progress=lambda _line: None)


def test_too_few_studies_are_refused_before_any_work(tiny_bundle: Path, tmp_path: Path) -> None:
    folder = _vertebra_crops(tmp_path / "few", range(3100, 3104))  # 24 crops
    with pytest.raises(InputError, match=r"24 radiographs; the domain needs at least 30"):
        fitting.check_domain_source(folder)
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    with pytest.raises(InputError, match="at least 30"):
        fitting.add_domain(bundle, folder, progress=lambda _line: None)
    assert open_bundle(bundle).manifest.domain is None
    assert not list(bundle.glob("domain.*"))


def test_a_domain_that_takes_noise_for_vertebrae_is_not_written(tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """The check at the end of fitting can fail: here every crop the fit sees is the white noise of the controls."""
    folder = tmp_path / "noise"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(36):
        noise = np.clip(rng.normal(0.5, 0.25, (64, 64)), 0, 1)
        cv2.imwrite(str(folder / f"n{i:02d}.png"), np.rint(noise * 255).astype(np.uint8))
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(ParityError, match="the domain check failed: crops that are no vertebra lie within"):
        fitting.add_domain(bundle, folder, progress=lambda _line: None)
    assert (bundle / "manifest.json").read_bytes() == before and not list(bundle.glob("domain.*"))


def test_fit_domain_replaces_the_domain_and_retires_the_old_file(
    tiny_domain_bundle: Path, crop_folder: Path, tmp_path: Path, capsys
) -> None:
    from olvf.export.cli import main

    bundle = Path(shutil.copytree(tiny_domain_bundle, tmp_path / "bundle"))
    old = open_bundle(bundle).manifest.domain.file
    assert main(["--fit-domain", str(bundle), "--domain", str(crop_folder)]) == 0
    new = open_bundle(bundle).manifest
    assert new.domain.file != old and not (bundle / old).exists() and old not in new.files
    open_bundle(bundle).verify_all()
    assert "held-out in-domain studies beyond it" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quantize", "B", "--domain", "D"], "--domain goes with an export or with --fit-domain DIR"),
        (["--verify", "B", "--domain", "D"], "--domain goes with an export or with --fit-domain DIR"),
    ],
)
def test_domain_flag_misuse_is_a_usage_error(argv: list[str], message: str, capsys) -> None:
    from olvf.export.cli import main

    assert main(argv) == UsageError.exit_code
    assert message in capsys.readouterr().err


def test_a_real_bundle_without_radiographs_gets_no_phantom_domain(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    update_manifest(
        bundle,
        lambda m: dataclasses.replace(
            m, demo=False, models=tuple(dataclasses.replace(s, source={"file": "x.pt"}) for s in m.models)
        ),
        "test",
    )
    with pytest.raises(InputError, match="phantoms fit only the demo bundle"):
        fitting.add_domain(bundle, None, progress=lambda _line: None)


# --------------------------------------------------------------------------- fitting, on numbers


def test_cross_fitted_distances_average_one_and_other_structure_is_far() -> None:
    """On stand-ins for pooled features (log-normal on a 5-dimensional structure in 256): held-out in-domain
    vertebrae average about 1 per model, features of another structure lie far beyond, and the threshold is the
    stated percentile of held-out study distances times the margin."""
    rng = np.random.default_rng(3)
    basis, other = rng.normal(size=(5, 256)), rng.normal(size=(5, 256))

    def study(n: int, structure: np.ndarray = basis) -> dict[str, np.ndarray]:
        latent = 0.3 * rng.normal(size=(n, 5)) @ structure + 0.05 * rng.normal(size=(n, 256))
        return {"a": np.exp(latent), "b": np.exp(latent[:, ::-1] + 0.05 * rng.normal(size=(n, 256)))}

    fit = [study(6) for _ in range(40)]
    check = [study(6) for _ in range(30)]
    domain = fitting.fit_domain(fit, check, ["a", "b"], file="domain.test.npz", fitted_on={}, components=8)
    crossed = fitting.cross_fit(fit, ["a", "b"], 8)
    for name in ("a", "b"):
        held = np.concatenate([s[name] for s in check])
        assert 0.8 < domain.statistics[name].distances(held).mean() < 1.25
    assert domain.threshold == pytest.approx(np.percentile(crossed.study_distances, 99) * fitting.MARGIN)
    assert domain.spec.held_out["rejected"] <= 1
    far = domain.study_distance(domain.vertebra_distances(study(6, other)))
    assert far > 5 * domain.threshold


def test_a_crop_with_non_finite_features_is_infinitely_far(tiny_domain_bundle: Path) -> None:
    domain = load_domain(open_bundle(tiny_domain_bundle))
    features = {name: np.full((3, s.feature_count), 0.5, np.float32) for name, s in domain.statistics.items()}
    first = next(iter(features))
    features[first][1, 0] = np.nan
    distances = domain.vertebra_distances(features)
    assert np.isfinite(distances[[0, 2]]).all() and distances[1] == np.inf
    assert domain.study_distance(distances) == pytest.approx(np.median(distances))
    assert domain.outside(np.inf) and not domain.outside(None) and not domain.outside(domain.threshold)
    with pytest.raises(BundleError, match="needs the pooled features of"):
        domain.vertebra_distances({first: features[first]})


def test_binomial_tail() -> None:
    assert fitting.binomial_tail(0, 10, 0.01) == pytest.approx(1.0)
    assert fitting.binomial_tail(1, 10, 0.01) == pytest.approx(1 - 0.99**10)
    assert fitting.binomial_tail(2, 8, 0.01) < fitting.CHECK_LEVEL < fitting.binomial_tail(1, 8, 0.01)


# --------------------------------------------------------------------------- the demo bundle


def _smooth(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    coarse = rng.uniform(0, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def photograph(seed: int, shape: tuple[int, int] = (1000, 1300)) -> np.ndarray:
    """Photograph-like: smooth colour gradients (as gray), blobs, and text-like stripes."""
    rng = np.random.default_rng(seed)
    image = 0.6 * _smooth(rng, shape, 3) + 0.2 * _smooth(rng, shape, 9)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(12):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(30, 200)
        image += rng.uniform(-0.3, 0.3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    for _ in range(25):
        y, x = int(rng.uniform(0, shape[0] - 20)), int(rng.uniform(0, shape[1] - 300))
        for k in range(int(rng.integers(5, 20))):
            image[y : y + 12, x + k * 14 : x + k * 14 + int(rng.integers(4, 12))] = rng.uniform(0, 0.2)
    return np.clip(image + rng.normal(0, 0.02, shape), 0, 1).astype(np.float32)


def axial_ct(seed: int, shape: tuple[int, int] = (1024, 1024)) -> np.ndarray:
    """An axial CT slice at a lumbar level: body outline, fat, a vertebral body with its cortex, kidneys, gas."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    cy, cx = shape[0] / 2, shape[1] / 2

    def ellipse(dy: float, dx: float, ry: float, rx: float) -> np.ndarray:
        return ((yy - cy - dy) / ry) ** 2 + ((xx - cx - dx) / rx) ** 2 < 1

    image = np.zeros(shape, np.float32)
    image[ellipse(0, 0, 380, 460)] = 0.35
    image[ellipse(0, 0, 340, 420)] = 0.45
    image[ellipse(180, 0, 70, 80)] = 0.9
    image[ellipse(180, 0, 55, 65)] = 0.7
    for side in (-1, 1):
        image[ellipse(60, side * 200, 90, 55)] = 0.55
    image[ellipse(-120, -100, 60, 90)] = 0.02
    image += rng.normal(0, 0.03, shape).astype(np.float32)
    return np.clip(cv2.GaussianBlur(image, (5, 5), 1.5), 0, 1)


def chest(seed: int, shape: tuple[int, int] = (2000, 1700)) -> np.ndarray:
    """A frontal chest film: dark lungs, ribs, the spine and the heart's shadow."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    image = np.full(shape, 0.65, np.float32)
    for side in (-1, 1):
        image[((yy - 900) / 600) ** 2 + ((xx - 850 - side * 380) / 260) ** 2 < 1] = 0.15
    for rib in range(8):
        image[np.abs(yy - (400 + rib * 150 + 0.0004 * (xx - 850) ** 2)) < 18] += 0.25
    image[np.abs(xx - 850) < 70] = 0.85
    heart = ((yy - 1150) / 300) ** 2 + ((xx - 800) / 280) ** 2 < 1
    image[heart] = np.maximum(image[heart], 0.7)
    image += 0.05 * _smooth(rng, shape, 6) + rng.normal(0, 0.02, shape)
    return np.clip(cv2.GaussianBlur(image, (9, 9), 3), 0, 1)


def rotated_phantom(seed: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(phantom_display(make_phantom(seed, size=(1250, 1000)))))


def top_third(seed: int) -> np.ndarray:
    image = phantom_display(make_phantom(seed, size=(1500, 1200)))
    return np.ascontiguousarray(image[: image.shape[0] // 3])


#: images that are no lateral lumbar radiograph, made here (seeds of their own, not those the method was chosen on)
NOT_LUMBAR = {
    "rotated phantom": rotated_phantom,
    "photograph": photograph,
    "axial CT": axial_ct,
    "chest film": chest,
}
SEEDS = (21, 22, 23)


@pytest.fixture(scope="module")
def demo_domain(demo_bundle: Path):
    with olvf.load(demo_bundle, backend="onnxruntime", precision="fp32", device="cpu") as rt:
        assert rt.domain is not None, "the demo bundle is fitted at export"
        yield rt


def _crop_features(rt, image: np.ndarray) -> dict[str, np.ndarray]:
    """Features of whatever the demo detector finds in ``image``, cut as olvf-infer cuts it."""
    (features,) = fitting.study_features(rt, [image])
    return features


@pytest.mark.slow
@needs_ultralytics
def test_the_demo_domain_was_fitted_on_phantoms_and_checked(demo_domain) -> None:
    spec = demo_domain.domain.spec
    assert spec.fitted_on["source"] == "phantoms"
    assert spec.fitted_on["studies"] == len(fitting.PHANTOM_FIT_SEEDS)
    assert spec.fitted_on["vertebrae"] == fitting.PHANTOM_VERTEBRAE * len(fitting.PHANTOM_FIT_SEEDS)
    held = spec.held_out
    assert held["studies"] == len(fitting.PHANTOM_CHECK_SEEDS) and held["rejected"] <= 1
    assert all(c["distance"] > spec.threshold for c in held["controls"] if c["required_beyond"])
    print(f"demo domain: threshold {spec.threshold:.3f} ({spec.threshold_rule}); held-out {held}")


@pytest.mark.slow
@needs_ultralytics
def test_held_out_phantoms_lie_within_the_demo_domain(demo_domain, tmp_path: Path) -> None:
    """20 studies of the held-out set of docs/how-to/validate-bundle.md (seeds 5000-5019, full-size DICOM,
    MONOCHROME1 and JPEG 2000 among them), read as olvf-infer reads them; the aim is at most 1 in 100 rejected,
    so none of 20 may be (fewer studies than 100 for time: about 1.5 s each)."""
    from olvf.phantom.sets import write_phantom_set
    from olvf.runtime.inputs.reader import read_radiograph

    folder = tmp_path / "held-out"
    write_phantom_set(folder, count=20, seed=5000)
    domain = demo_domain.domain
    distances = []
    for path in sorted(folder.glob("phantom-*.dcm")):
        image = read_radiograph(path, demo_domain.manifest.display).pixels
        features = _crop_features(demo_domain, image)
        distances.append(domain.study_distance(domain.vertebra_distances(features)))
    assert None not in distances
    beyond = [(i, round(d, 2)) for i, d in enumerate(distances) if d > domain.threshold]
    print(f"held-out phantoms: distances {np.round(distances, 2).tolist()}, threshold {domain.threshold:.2f}")
    assert not beyond, f"held-out phantoms beyond the threshold {domain.threshold:.2f}: {beyond}"


#: Measured limits of the demo's domain, kept as strict expected failures so that a change either way is seen. Its
#: backbones are random (seeded); to them the vertebral-body ring of an axial CT slice, some photograph patches and
#: the centre of a chest film lie at 2.2-3.7: farther than all but the rarest held-out phantoms (at most 2.5), but
#: nearer than those (dark, high-contrast films at 4.2-4.7, about 1 in 100), which set the threshold by its rule
#: (about 4.1).
LIMIT = (
    "demo limit, measured: its random backbones put {} at 2.2-3.7, within the threshold (about 4.1) that the rare "
    "dark phantoms set"
)
DEMO_LIMITS = {
    "photograph": LIMIT.format("some photograph patches"),
    "axial CT": LIMIT.format("the vertebral-body ring of an axial CT slice"),
}


def _kinds(kinds: list[str], limits: dict[str, str]) -> list:
    return [
        pytest.param(kind, marks=pytest.mark.xfail(strict=True, reason=limits[kind])) if kind in limits else kind
        for kind in kinds
    ]


@pytest.mark.slow
@needs_ultralytics
@pytest.mark.parametrize("kind", _kinds(list(NOT_LUMBAR), DEMO_LIMITS))
def test_what_the_detector_finds_in_other_images_lies_outside_the_demo_domain(demo_domain, kind: str) -> None:
    """Where the detector finds 'vertebrae' in an image that is no lateral lumbar film, the study lies beyond the
    threshold; where it finds none there is nothing to measure (the anatomy check says so, not this one)."""
    domain = demo_domain.domain
    measured = []
    for seed in SEEDS:
        features = _crop_features(demo_domain, NOT_LUMBAR[kind](seed))
        distance = domain.study_distance(domain.vertebra_distances(features))
        if distance is not None:
            measured.append(round(distance, 2))
    print(f"{kind}: study distances {measured}, threshold {domain.threshold:.2f}")
    assert measured, f"the detector found nothing in any {kind}: nothing to measure, test something else"
    assert all(d > domain.threshold for d in measured), f"{kind}: {measured} (threshold {domain.threshold:.2f})"


def _centre_crops(image: np.ndarray) -> list[np.ndarray]:
    height, width = image.shape
    crops = []
    for share in (0.15, 0.3, 0.5):
        side = int(min(height, width) * share)
        y, x = (height - side) // 2, (width - side) // 2
        crops.append(image[y : y + side, x : x + side])
    return crops


@pytest.mark.slow
@needs_ultralytics
@pytest.mark.parametrize(
    "kind",
    _kinds(
        ["photograph", "axial CT", "chest film"],
        {
            "photograph": LIMIT.format("two of nine centre crops of photographs"),
            "chest film": LIMIT.format("the spine and heart shadow at the centre of a chest film"),
        },
    ),
)
def test_crops_cut_from_other_images_lie_outside_the_demo_domain(demo_domain, kind: str) -> None:
    domain = demo_domain.domain
    crops = [crop for seed in SEEDS for crop in _centre_crops(NOT_LUMBAR[kind](seed))]
    distances = domain.vertebra_distances(demo_domain.classify_crops(crops).features)
    print(f"{kind}: centre crops at {np.round(distances, 2).tolist()}, threshold {domain.threshold:.2f}")
    assert (distances > domain.threshold).all()


@pytest.mark.slow
@needs_ultralytics
def test_the_domain_check_costs_little(demo_domain) -> None:
    domain = demo_domain.domain
    features = _crop_features(demo_domain, phantom_display(make_phantom(7, size=(1250, 1000))))
    started = time.perf_counter()
    for _ in range(100):
        domain.study_distance(domain.vertebra_distances(features))
    per_study = (time.perf_counter() - started) / 100 * 1e3
    started = time.perf_counter()
    load_domain(demo_domain.bundle)
    print(
        f"domain distance: {per_study:.2f} ms per study of {len(next(iter(features.values())))} vertebrae; "
        f"statistics read in {(time.perf_counter() - started) * 1e3:.0f} ms"
    )
