"""Fitting the bundle's own domain (:mod:`olvf.runtime.bundle.domain`) on in-domain studies, then checking it.

Studies run through the bundle as ``olvf-infer`` runs them, step by step
(ONNX Runtime, FP32 graphs, on CPU): the bundle's detector, its crop rule,
the manifest's preprocessing and the fused graph's pooled features. Not
through the study pipeline, which itself calls the domain check.

The studies are split in two, by study (never a study's vertebrae on both sides):

1. **fit** studies. Their statistics are fitted by K-fold cross-fitting
   (``FOLDS``): every fit study's distance is computed from statistics
   fitted without it, and these held-out distances set each model's scale
   and the threshold: the ``PERCENTILE``-th percentile of the held-out study
   distances times ``MARGIN``. The statistics kept are then fitted on all fit
   studies.
2. **check** studies, used for nothing else: the false-rejection rate
   measured on them must be consistent with the rate aimed at (one-sided
   binomial test at ``CHECK_LEVEL``), and crops of white noise must lie
   beyond the threshold (other crops that are no vertebra are measured:
   :data:`CONTROLS`); else no domain is written.

For ``olvf-export --demo`` the studies are phantoms (seeds of their own, see
``PHANTOM_FIT_SEEDS``); for a bundle of real checkpoints the site's own
radiographs (``--domain FOLDER|SET.csv``), the check studies those whose
content hash falls in the last quarter. The manifest records counts and
figures, never a file name. numpy only: no torch.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from olvf.errors import BundleError, InputError, ParityError
from olvf.runtime.bundle.domain import METHOD, VERSION, DomainModel, ModelStatistics, statistics_bytes
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.bundle.manifest import DomainSpec, Manifest
from olvf.runtime.bundle.updates import check_writable, update_manifest
from olvf.runtime.steps.crops import extract_crops

if TYPE_CHECKING:
    from olvf.runtime.study.runtime import Runtime

Progress = Callable[[str], None]
Features = dict[str, np.ndarray]  # one study: model name -> (vertebrae, K)
Chooser = Callable[[int, int], np.ndarray]  # (study index, vertebrae found) -> indices of those to use

#: phantoms the demo's domain is fitted on, and those that check it; used by no other part of olvf (the demo's INT8
#: calibration uses 1000-1015, --check-routes and the docs' held-out set 5000 on, the demo's training 100000 on)
PHANTOM_FIT_SEEDS = range(2000, 2044)
PHANTOM_CHECK_SEEDS = range(2100, 2108)
#: vertebrae of each phantom that go to the ensemble (the detector finds six; each costs 0.2 s on 2 cores): a
#: study's exposure and contrast move all its vertebrae together, so more studies with fewer vertebrae each cover
#: the phantoms' range better for the same time (measured on 185 phantoms: 48 x 3 halved the false rejections of
#: 35 x 6). Check phantoms too: the threshold is set on studies of three.
PHANTOM_VERTEBRAE = 3
#: the fit phantoms' rows, log-uniform, columns 0.75-0.9 of them (small films draw fast; crops are resized to the
#: input anyway, and a domain fitted on films under 1500 rows measured the same on 2500-row ones); check phantoms
#: span the demo classifiers' training range
PHANTOM_FIT_ROWS = (1000, 1500)
PHANTOM_CHECK_ROWS = (1000, 2600)
#: fewer in-domain studies than this fit nothing worth a threshold
MIN_STUDIES = 30
#: principal components per model, at most (and at most a third of the vertebrae a fold is fitted on); the rest
#: of the feature space is one residual term
COMPONENTS = 48
FOLDS = 5
#: the false-rejection rate aimed at, on in-domain studies; the threshold is the matching percentile of held-out
#: in-domain study distances, times the margin (the percentile of a few dozen studies is their largest or so)
FALSE_REJECTION_AIM = 0.01
PERCENTILE = 100 * (1 - FALSE_REJECTION_AIM)
MARGIN = 1.25
#: the log features' offset, as a share of the model's median in-domain feature
OFFSET = 1e-3
#: the check fails when its rejections would be this improbable at the aimed rate
CHECK_LEVEL = 0.05
#: check studies: those whose content sha256 is 0 modulo this (a quarter)
CHECK_SHARE = 4
#: studies per detector and ensemble call while fitting
CHUNK = 4
FILE_PREFIX = "domain"


# --------------------------------------------------------------------------- features of studies


def study_features(
    rt: Runtime, images: Iterable[np.ndarray], chunk: int = CHUNK, choose: Chooser | None = None
) -> Iterator[Features]:
    """Each image's vertebrae found, cut and classified as olvf-infer does; their pooled features, study by study.

    ``choose(i, count)``: which of study ``i``'s ``count`` vertebrae go to the ensemble (default: all).
    """
    names = [spec.name for spec in rt.manifest.models]
    missing = [spec.name for spec in rt.manifest.models if not spec.features_output]
    if missing:
        raise BundleError(
            f"bundle {rt.bundle.path}: its graph does not output the pooled features of {', '.join(missing)} "
            "(exported before olvf had the domain check); re-export the bundle"
        )
    group: list[np.ndarray] = []
    done = 0
    for image in images:
        group.append(image)
        if len(group) == chunk:
            yield from _group_features(rt, group, names, done, choose)
            done += len(group)
            group = []
    if group:
        yield from _group_features(rt, group, names, done, choose)


def _group_features(
    rt: Runtime, images: list[np.ndarray], names: list[str], first: int, choose: Chooser | None
) -> Iterator[Features]:
    if rt.detector is not None:
        boxed = [rt.detector_input(image) for image in images]
        raw = rt.run_detector(np.stack([tensor for tensor, _ in boxed]))
        boxes = [rt.decode(raw[i], fitted).boxes for i, (_, fitted) in enumerate(boxed)]
        if choose is not None:
            boxes = [found[choose(first + i, len(found))] for i, found in enumerate(boxes)]
        crops = [extract_crops(image, found, rt.manifest.crops) for image, found in zip(images, boxes)]
    else:
        crops = [[image] for image in images]  # the whole image is the one crop, as the study pipeline cuts it
    counts = [len(c) for c in crops]
    flat = [crop for study in crops for crop in study]
    if flat:
        features = rt.explain(rt.run_ensemble(rt.preprocessor(flat))).features
    else:
        features = rt.empty_classification().features
    start = 0
    for count in counts:
        yield {name: np.asarray(features[name][start : start + count], np.float32) for name in names}
        start += count


# --------------------------------------------------------------------------- fitting


def fit_statistics(features: np.ndarray, components: int = COMPONENTS, offset: float | None = None) -> ModelStatistics:
    """The statistics of in-domain pooled features (n, K): offset, mean, top principal directions and variances,
    residual variance, all of the log features (see :mod:`olvf.runtime.bundle.domain`). ``offset`` None: from these."""
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    if n < components + 2:
        raise InputError(f"{n} vertebrae cannot fit {components} principal components; give more studies")
    if offset is None:
        offset = max(float(np.median(x)), 1e-12) * OFFSET
    stats = ModelStatistics(offset, np.zeros(x.shape[1]), np.zeros((0, x.shape[1])), np.ones(0), 1.0)
    z = stats.transform(x)
    mean = z.mean(axis=0)
    centred = z - mean
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    eigenvalues = singular[:components] ** 2 / (n - 1)
    top = directions[:components]
    residual = centred - (centred @ top.T) @ top
    residual_variance = float((residual**2).sum(axis=1).mean())
    # A direction the set never varies in, or no residual at all, would divide by zero: floor both at a
    # negligible share of the largest variance.
    floor = max(float(eigenvalues[0]), 1e-30) * 1e-9
    return ModelStatistics(
        offset=offset,
        mean=mean,
        components=top,
        eigenvalues=np.maximum(eigenvalues, floor),
        residual_variance=max(residual_variance, floor),
    )


def _stack(studies: Sequence[Features], name: str) -> np.ndarray:
    return np.concatenate([study[name] for study in studies])


def _study_distances(vertebrae: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """The median of each study's vertebra distances (studies without vertebrae are never passed here)."""
    bounds = np.cumsum([0, *counts])
    return np.array([float(np.median(vertebrae[a:b])) for a, b in zip(bounds[:-1], bounds[1:])])


def _folds(count: int, folds: int, seed: int = 0) -> np.ndarray:
    """A fold per study, balanced, in a seeded order (files sorted by name may be sorted by date or scanner)."""
    order = np.random.default_rng(seed).permutation(count)
    assignment = np.empty(count, np.int64)
    assignment[order] = np.arange(count) % folds
    return assignment


@dataclass(frozen=True)
class CrossFit:
    """Held-out distances of the fit studies and the statistics fitted on all of them."""

    statistics: dict[str, ModelStatistics]  # fitted on every fit study, with the held-out scales
    vertebra_distances: np.ndarray  # each fit vertebra's, from statistics fitted without its study
    study_distances: np.ndarray


def cross_fit(
    studies: Sequence[Features], models: Sequence[str], components: int = COMPONENTS, folds: int = FOLDS
) -> CrossFit:
    """K-fold cross-fitting by study (see the module docstring); ``studies`` all have vertebrae."""
    counts = [len(study[models[0]]) for study in studies]
    fold_of = np.repeat(_folds(len(studies), folds), counts)
    unscaled: dict[str, np.ndarray] = {}
    statistics = {}
    for name in models:
        x = _stack(studies, name)
        offset = max(float(np.median(x)), 1e-12) * OFFSET  # one offset for the folds and the whole: same space
        held_out = np.empty(len(x))
        for fold in range(folds):
            inside = fold_of == fold
            held_out[inside] = fit_statistics(x[~inside], components, offset).unscaled(x[inside])
        unscaled[name] = held_out
        # Each model's held-out in-domain vertebrae average 1, so that each counts equally in the mean over models.
        whole = fit_statistics(x, components, offset)
        statistics[name] = dataclasses.replace(whole, scale=float(held_out.mean()))
    vertebrae = np.mean([unscaled[name] / statistics[name].scale for name in models], axis=0)
    return CrossFit(statistics, vertebrae, _study_distances(vertebrae, counts))


def components_for(studies: Sequence[Features], models: Sequence[str], folds: int = FOLDS) -> int:
    """``COMPONENTS``, or fewer where a fold is fitted on few vertebrae (at most a third of them)."""
    counts = np.array([len(study[models[0]]) for study in studies])
    fold_of = _folds(len(studies), folds)
    smallest = min(int(counts[fold_of != fold].sum()) for fold in range(folds))
    return max(1, min(COMPONENTS, smallest // 3))


def binomial_tail(rejected: int, studies: int, rate: float) -> float:
    """P(at least ``rejected`` of ``studies`` rejected) when each is rejected with probability ``rate``."""
    return float(
        sum(math.comb(studies, k) * rate**k * (1 - rate) ** (studies - k) for k in range(rejected, studies + 1))
    )


#: crops that are no vertebra, each with whether the check requires it beyond the threshold: a domain that takes
#: white noise for a vertebra is broken. The others are measured and recorded, not required: to seeded random
#: backbones a smooth gray texture can look much like trabecular bone (the demo's: one at 1.5, a held-out
#: phantom's median being 1.0), and to the tests' tiny networks a flat field like a small crop's soft tissue.
CONTROLS: tuple[tuple[str, bool], ...] = (
    ("white noise", True),
    ("white noise", True),
    ("smooth random image, 4 x 4 cells", False),
    ("smooth random image, 12 x 12 cells", False),
    ("flat gray field", False),
)


def control_crops(
    shape: tuple[int, int, int], mean: Sequence[float], std: Sequence[float], seed: int = 7
) -> np.ndarray:
    """The :data:`CONTROLS`, in order, preprocessed as the manifest says (N, 3, H, W)."""
    rng = np.random.default_rng(seed)
    _, height, width = shape
    gray: list[np.ndarray] = [np.clip(rng.normal(0.5, 0.25, (height, width)), 0, 1) for _ in range(2)]
    for cells in (4, 12):
        coarse = rng.uniform(0, 1, (cells, cells)).astype(np.float32)
        gray.append(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC))
    gray.append(np.full((height, width), 0.5))
    batch = np.clip(np.stack(gray), 0, 1).astype(np.float32)[:, None].repeat(3, axis=1)
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    return ((batch - m) / s).astype(np.float32)


def fit_domain(
    fit: Sequence[Features],
    check: Sequence[Features],
    models: Sequence[str],
    *,
    file: str,
    fitted_on: dict[str, Any],
    controls: Features | None = None,
    components: int | None = None,
    progress: Progress = lambda _line: None,
) -> DomainModel:
    """The domain of ``fit`` studies, checked on ``check`` studies and ``controls`` crops; ParityError if it fails."""
    fit = [study for study in fit if len(study[models[0]])]
    check = [study for study in check if len(study[models[0]])]
    if len(fit) + len(check) < MIN_STUDIES or not check:
        raise InputError(
            f"the domain needs at least {MIN_STUDIES} in-domain studies in which the detector finds vertebrae, "
            f"{len(fit) + len(check)} were found; give more radiographs like the ones the bundle will see"
        )
    components = components or components_for(fit, models)
    crossed = cross_fit(fit, models, components)
    threshold = float(np.percentile(crossed.study_distances, PERCENTILE) * MARGIN)
    rule = (
        f"the {PERCENTILE:g}th percentile of the held-out distances of {len(fit)} in-domain studies ({FOLDS}-fold "
        f"cross-fitting by study: each study's distance from statistics fitted without it), times {MARGIN:g}"
    )
    provisional = DomainSpec(
        file=file,
        method=METHOD,
        version=VERSION,
        models=tuple(models),
        components=components,
        threshold=threshold,
        threshold_rule=rule,
        fitted_on={},
        held_out={},
    )
    domain = DomainModel(provisional, crossed.statistics)
    checked = [domain.study_distance(domain.vertebra_distances(study)) for study in check]
    check_distances = np.array([d for d in checked if d is not None])
    rejected = int((check_distances > threshold).sum())
    p_value = binomial_tail(rejected, len(check_distances), FALSE_REJECTION_AIM)
    figures: dict[str, Any] = {
        "threshold_set_on": {
            "studies": len(fit),
            "vertebrae": int(len(crossed.vertebra_distances)),
            "how": f"{FOLDS}-fold cross-fitting by study",
            "study_distance_percentiles": _percentiles(crossed.study_distances),
            # on the studies that set it, so optimistic: the check studies measure it
            "false_rejection_cross_fitted": float((crossed.study_distances > threshold).mean()),
        },
        "studies": len(check_distances),
        "vertebrae": int(sum(len(study[models[0]]) for study in check)),
        "false_rejection_aimed": FALSE_REJECTION_AIM,
        "rejected": rejected,
        "false_rejection_measured": rejected / len(check_distances),
        "binomial_p": p_value,
        "study_distance_percentiles": _percentiles(check_distances),
    }
    problems = []
    if p_value < CHECK_LEVEL:
        problems.append(
            f"{rejected} of {len(check_distances)} held-out in-domain studies lie beyond the threshold "
            f"{threshold:.3g}, improbable at the aimed false-rejection rate {FALSE_REJECTION_AIM:.0%} "
            f"(p = {p_value:.2g})"
        )
    if controls is not None:
        distances = domain.vertebra_distances(controls)
        figures["controls"] = [
            {"what": what, "required_beyond": required, "distance": float(d)}
            for (what, required), d in zip(CONTROLS, distances)
        ]
        inside = [
            f"{what} at {d:.3g}" for (what, required), d in zip(CONTROLS, distances) if required and d <= threshold
        ]
        if inside:
            problems.append(
                f"crops that are no vertebra lie within the threshold {threshold:.3g} ({'; '.join(inside)}): the "
                "features do not tell them from the fitted studies"
            )
    progress(_summary(figures, threshold))
    if problems:
        raise ParityError("the domain check failed: " + "; ".join(problems) + "; no domain was written", figures)
    spec = dataclasses.replace(
        provisional,
        fitted_on={
            **fitted_on,
            "studies": len(fit),
            "vertebrae": int(len(crossed.vertebra_distances)),
        },
        held_out=figures,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return DomainModel(spec, crossed.statistics)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)} | {"max": float(values.max())}


def _summary(figures: dict[str, Any], threshold: float) -> str:
    line = (
        f"      domain threshold {threshold:.3g}; held-out in-domain studies: "
        f"{figures['rejected']} of {figures['studies']} beyond it (aimed at {figures['false_rejection_aimed']:.0%}), "
        f"median distance {figures['study_distance_percentiles']['p50']:.2f}, largest "
        f"{figures['study_distance_percentiles']['max']:.2f}"
    )
    if "controls" in figures:
        shown = ", ".join(f"{c['what'].split(',')[0]} {c['distance']:.3g}" for c in figures["controls"])
        line += f"; crops that are no vertebra: {shown}"
    return line


# --------------------------------------------------------------------------- sources of in-domain studies


def phantom_size(seed: int, rows: tuple[int, int] = PHANTOM_FIT_ROWS) -> tuple[int, int]:
    """The matrix of the phantom drawn with ``seed`` for the demo's domain: rows log-uniform in ``rows``."""
    rng = np.random.default_rng([seed, 77])
    low, high = rows
    count = int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
    return count, int(round(count * rng.uniform(0.75, 0.9)))


def phantom_images(seeds: Iterable[int], rows: tuple[int, int] = PHANTOM_FIT_ROWS) -> Iterator[np.ndarray]:
    """The phantoms, each drawn in a thread while the one before is classified (drawing leaves a core idle)."""
    from concurrent.futures import ThreadPoolExecutor

    from olvf.phantom import make_phantom, phantom_display

    def draw(seed: int) -> np.ndarray:
        return phantom_display(make_phantom(seed, size=phantom_size(seed, rows)))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="olvf-phantom") as pool:
        pending: collections.deque[Any] = collections.deque()
        for seed in seeds:
            pending.append(pool.submit(draw, seed))
            if len(pending) > CHUNK:  # a batch ahead, no more: full-size phantoms are 20 MB each
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _phantom_studies(rt: Runtime, progress: Progress) -> tuple[list[Features], list[Features], dict[str, Any]]:
    fit_seeds, check_seeds = PHANTOM_FIT_SEEDS, PHANTOM_CHECK_SEEDS
    progress(
        f"      {len(fit_seeds)} phantoms to fit ({PHANTOM_VERTEBRAE} vertebrae each, seeds {fit_seeds[0]}-"
        f"{fit_seeds[-1]}), {len(check_seeds)} to check (seeds {check_seeds[0]}-{check_seeds[-1]}); about 40 s"
    )

    def chooser(seeds: range) -> Chooser:
        def choose(index: int, count: int) -> np.ndarray:
            rng = np.random.default_rng([seeds[index], 3])
            return np.sort(rng.choice(count, size=min(PHANTOM_VERTEBRAE, count), replace=False))

        return choose

    fit = list(study_features(rt, phantom_images(fit_seeds, PHANTOM_FIT_ROWS), choose=chooser(fit_seeds)))
    check = list(study_features(rt, phantom_images(check_seeds, PHANTOM_CHECK_ROWS), choose=chooser(check_seeds)))
    record = {
        "source": "phantoms",
        "description": "phantom lateral lumbar radiographs (olvf.phantom)",
        "drawn": (
            f"fractures as each seed chooses, {PHANTOM_VERTEBRAE} vertebrae of each; fit: {PHANTOM_FIT_ROWS[0]}-"
            f"{PHANTOM_FIT_ROWS[1]} rows; check: {PHANTOM_CHECK_ROWS[0]}-{PHANTOM_CHECK_ROWS[1]} rows"
        ),
        "seeds": [fit_seeds[0], fit_seeds[-1]],
        "check_seeds": [check_seeds[0], check_seeds[-1]],
    }
    return fit, check, record


def check_domain_source(source: Path) -> None:
    """Refuse, before any work, a ``--domain`` argument that cannot hold enough studies."""
    from olvf.export.quantize import radiograph_paths

    count = len(radiograph_paths(Path(source), flag="--domain"))
    if count < MIN_STUDIES:
        raise InputError(
            f"--domain {source}: {count} radiographs; the domain needs at least {MIN_STUDIES} in-domain studies "
            "(a few hundred lateral lumbar films of the site make a tighter one)"
        )


def _radiograph_studies(
    rt: Runtime, source: Path, progress: Progress
) -> tuple[list[Features], list[Features], dict[str, Any]]:
    from olvf.export.quantize import radiograph_paths
    from olvf.runtime.inputs.reader import read_radiograph

    check_domain_source(source)
    paths = radiograph_paths(source, flag="--domain")
    progress(f"      reading {len(paths)} radiographs for the domain")
    seen: set[str] = set()
    kept: list[tuple[Path, str]] = []
    skipped = duplicates = 0

    def images() -> Iterator[np.ndarray]:
        nonlocal skipped, duplicates
        for path in paths:
            try:
                radiograph = read_radiograph(path, rt.manifest.display)
            except InputError as exc:
                skipped += 1
                progress(f"      skipped: {exc}")
                continue
            digest = radiograph.info.sha256 or hashlib.sha256(radiograph.pixels.tobytes()).hexdigest()
            if digest in seen:  # one film twice would sit on both sides of the split
                duplicates += 1
                continue
            seen.add(digest)
            kept.append((path, digest))
            yield radiograph.pixels

    studies = list(study_features(rt, images()))
    held = [int(digest, 16) % CHECK_SHARE == 0 for _, digest in kept]
    fit = [study for study, check in zip(studies, held) if not check]
    check = [study for study, check in zip(studies, held) if check]
    name = rt.manifest.model_names[0]
    record = {
        "source": "labelled set" if source.suffix.lower() == ".csv" else "radiograph folder",
        "description": "the in-domain radiographs given to olvf-export --domain",
        "images": len(kept),
        "images_skipped": skipped,
        "duplicates": duplicates,
        "studies_without_vertebrae": sum(1 for study in studies if not len(study[name])),
        "check_split": f"studies whose content sha256 is 0 modulo {CHECK_SHARE} check, the others fit",
        # The set is identified by its contents, not its file names (which can identify patients).
        "images_sha256": hashlib.sha256("".join(sorted(d for _, d in kept)).encode()).hexdigest(),
    }
    return fit, check, record


# --------------------------------------------------------------------------- into a bundle


def add_domain(bundle_dir: str | Path, radiographs: Path | None = None, *, progress: Progress = print) -> Manifest:
    """Fit the bundle's domain and add it (replacing one already there); return the new manifest.

    ``radiographs``: a folder of in-domain radiographs or a labelled set's CSV; None only for a demo bundle
    (phantoms). Runs ONNX Runtime FP32 on CPU.
    """
    import olvf

    started = time.monotonic()
    folder = Path(bundle_dir)
    manifest = open_bundle(folder).manifest
    check_writable(folder, "the domain statistics")
    if not manifest.has("ensemble"):
        raise BundleError(f"bundle {folder} has no classifiers, whose features the domain check measures")
    unpooled = [spec.name for spec in manifest.models if not spec.features_output]
    if unpooled:
        raise BundleError(
            f"bundle {folder}: its graph does not output the pooled features of {', '.join(unpooled)} (exported "
            "before olvf had the domain check); re-export the bundle"
        )
    if radiographs is None and not manifest.demo:
        raise InputError(
            "the domain of a bundle of real checkpoints is fitted on radiographs like the ones it will see: "
            f"give --domain FOLDER|SET.csv with at least {MIN_STUDIES} of them (phantoms fit only the demo bundle)"
        )
    file = f"{FILE_PREFIX}.{secrets.token_hex(3)}.npz"
    with olvf.load(folder, backend="onnxruntime", precision="fp32", device="cpu") as rt:
        if radiographs is None:
            fit, check, record = _phantom_studies(rt, progress)
        else:
            fit, check, record = _radiograph_studies(rt, Path(radiographs), progress)
        pre = manifest.preprocessing
        controls = rt.explain(rt.run_ensemble(control_crops(rt.preprocessor.input_shape, pre.mean, pre.std))).features
        domain = fit_domain(
            fit, check, manifest.model_names, file=file, fitted_on=record, controls=controls, progress=progress
        )
    path = folder / file
    data = statistics_bytes(domain.statistics)
    retired: set[str] = set()
    try:
        path.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()

        graph = manifest.graph("ensemble", "fp32").file

        def add(current: Manifest) -> Manifest:
            if current.files.get(graph) != manifest.files[graph] or current.models != manifest.models:
                raise BundleError(f"the classifiers of {folder} changed while its domain was fitted; fit it again")
            if current.domain is not None:
                retired.add(current.domain.file)
            files = {k: v for k, v in current.files.items() if k not in retired}
            files[file] = digest
            return dataclasses.replace(current, domain=domain.spec, files=files)

        new = update_manifest(folder, add, "the domain statistics")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    for name in retired - {file}:
        (folder / name).unlink(missing_ok=True)
    progress(f"      domain {file} added in {time.monotonic() - started:.0f} s")
    return new
