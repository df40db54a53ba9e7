"""A reduced-precision CPU route against the FP32 reference on phantom studies with known truth.

Both run the whole cascade (detector, crops, ensemble, Grad-CAM, MRI verdict)
on the same phantom radiographs: ONNX Runtime on CPU with the FP32 graphs,
the reference, and the route (OpenVINO BF16 or INT8). Compared per vertebra
(matched by level): the predicted class, the probabilities, each model's and
the fused Grad-CAM map (Pearson correlation of the maps as shown); per study:
the vertebrae found and the MRI recommendation; against the phantoms' truth:
accuracy and fresh-fracture sensitivity of each side. The limits are
:data:`olvf.runtime.bundle.tolerances.ROUTES`.

For the demo bundle the phantoms *are* its labelled set, and a pass is
recorded as verification (:func:`verify_demo_route`). A bundle of real
checkpoints is verified on the site's labelled radiographs by
``olvf-validate``; this check then only says whether the arithmetic holds.
Seeds start at 5000, away from the demo's calibration seeds (1000-1015).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from olvf.errors import OlvfError, UsageError
from olvf.runtime.bundle import tolerances
from olvf.runtime.bundle.files import Bundle, open_bundle
from olvf.runtime.bundle.manifest import Manifest
from olvf.runtime.runners.cpu import cpu_kind
from olvf.runtime.runners.verified_routes import record_verified_route, route
from olvf.runtime.study.results import StudyResult
from olvf.runtime.study.runtime import Runtime, open_runtime

Progress = Callable[[str], None]
FIRST_SEED = 5000
PHANTOM_SIZE = (1250, 1000)  # half the full film: the crops are resized to the input size anyway


@dataclass(frozen=True)
class RouteCheck:
    route: str
    passed: bool
    figures: dict[str, Any]
    problems: tuple[str, ...] = field(default_factory=tuple)

    def line(self) -> str:
        f = self.figures
        verdict = "pass" if self.passed else "fail: " + "; ".join(self.problems)
        return (
            f"{self.route}: {f['vertebrae']} vertebrae of {f['studies']} studies, decisions agree "
            f"{_share(f['decision_agreement'])}, MRI changed in {f['mri_changed']}, fused Grad-CAM r >= "
            f"{_r(f['gradcam_min_r'])} (1st percentile {_r(f['gradcam_p01_r'])}; per model >= "
            f"{_r(f['gradcam_model_min_r'])}, 1st percentile {_r(f['gradcam_model_p01_r'])}), probabilities within "
            f"{f['probabilities_max_abs_diff']:.1e}, accuracy {_signed(f['metric_change']['accuracy'])}, fresh "
            f"sensitivity {_signed(f['metric_change']['fresh_sensitivity'])}, "
            + (f"{f['speedup']:.2f}x the reference's ensemble speed" if f["speedup"] else "speed not measured")
            + f": {verdict}"
        )


def _signed(change: float | None) -> str:
    return "not measurable" if change is None else f"{change:+.3f}"


def _share(value: float | None) -> str:
    return "not measurable" if value is None else f"{value:.2%}"


def _r(value: float | None) -> str:
    return "not measurable" if value is None else f"{value:.3f}"


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each pair of maps (N, H, W); two flat maps agree (1), a flat and a shaped one do not (0)."""
    if len(a) == 0:
        return np.zeros(0)
    x = a.reshape(len(a), -1).astype(np.float64)
    y = b.reshape(len(b), -1).astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    flat_x, flat_y = nx == 0, ny == 0
    r = (x * y).sum(axis=1) / np.where(flat_x | flat_y, 1.0, nx * ny)
    return np.where(flat_x & flat_y, 1.0, np.where(flat_x | flat_y, 0.0, r))


#: what each metric of a route check needs among the matched vertebrae to be measurable
_METRIC_NEEDS = {"accuracy": "no labelled vertebra was matched", "fresh_sensitivity": "no fresh vertebra was matched"}


def _metrics(predictions: list[str], truth: list[str]) -> dict[str, float | None]:
    """Accuracy and fresh sensitivity against the labels; None where the set holds nothing to measure it on."""
    hits = [p == t for p, t in zip(predictions, truth)]
    fresh = [p == "fresh" for p, t in zip(predictions, truth) if t == "fresh"]
    return {
        "accuracy": float(np.mean(hits)) if hits else None,
        "fresh_sensitivity": float(np.mean(fresh)) if fresh else None,
    }


def _change(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def compare_studies(
    reference: Sequence[StudyResult], candidate: Sequence[StudyResult], truths: Sequence[dict[str, str]]
) -> dict[str, Any]:
    """Figures of a route's studies against the reference's on the same radiographs."""
    agree, total, mri_changed, lost = 0, 0, 0, 0
    prob_diff, fused_r, model_r = 0.0, [], []
    sides: dict[str, list[str]] = {"reference": [], "candidate": []}
    labels: list[str] = []
    for ref, got, truth in zip(reference, candidate, truths):
        mri_changed += int(ref.decision.recommended != got.decision.recommended)
        ref_at = {level: i for i, level in enumerate(ref.detections.levels)}
        got_at = {level: i for i, level in enumerate(got.detections.levels)}
        lost += len(set(ref_at) ^ set(got_at))
        total += len(ref_at)
        common = [level for level in ref_at if level in got_at]
        i = np.array([ref_at[level] for level in common], np.int64)
        j = np.array([got_at[level] for level in common], np.int64)
        rc, gc = ref.classification, got.classification
        if len(common):
            same = rc.predictions[i] == gc.predictions[j]
            agree += int(same.sum())
            prob_diff = max(prob_diff, float(np.abs(rc.probabilities[i] - gc.probabilities[j]).max()))
            # Maps are compared where both show the same class; a changed decision is counted above, and its
            # map (of another class) would say nothing about the arithmetic of the maps.
            i, j = i[same], j[same]
            fused_r.extend(correlation(rc.cam[i], gc.cam[j]).tolist())
            for name in rc.cams:
                model_r.extend(correlation(rc.cams[name][i], gc.cams[name][j]).tolist())
        for level in common:
            if level in truth:
                labels.append(truth[level])
                sides["reference"].append(rc.labels[ref_at[level]])
                sides["candidate"].append(gc.labels[got_at[level]])
    ref_metrics, got_metrics = _metrics(sides["reference"], labels), _metrics(sides["candidate"], labels)
    ref_ms = sum(s.timings.ensemble or 0.0 for s in reference)
    got_ms = sum(s.timings.ensemble or 0.0 for s in candidate)
    return {
        "studies": len(reference),
        "vertebrae": total,
        "vertebrae_not_matched": lost,
        # None where nothing could be compared: no evidence, which the gate fails (never 1.0, a pass)
        "decision_agreement": agree / total if total else None,
        "mri_changed": mri_changed,
        "probabilities_max_abs_diff": prob_diff,
        "gradcam_min_r": float(min(fused_r)) if fused_r else None,
        "gradcam_p01_r": float(np.percentile(fused_r, 1)) if fused_r else None,
        "gradcam_model_min_r": float(min(model_r)) if model_r else None,
        "gradcam_model_p01_r": float(np.percentile(model_r, 1)) if model_r else None,
        "metrics_reference": ref_metrics,
        "metrics_candidate": got_metrics,
        "metric_change": {k: _change(got_metrics[k], ref_metrics[k]) for k in ref_metrics},
        # None: not measured (no time recorded), never NaN, which no JSON writer may carry
        "speedup": ref_ms / got_ms if got_ms and ref_ms else None,
    }


def judge(name: str, figures: dict[str, Any]) -> tuple[str, ...]:
    """What in ``figures`` is over the route's limits, one phrase each."""
    limits = tolerances.ROUTES[name]
    problems = []
    enough = f"use a set with at least {tolerances.MIN_GATE_VERTEBRAE_PER_CLASS} vertebrae of each class"
    if figures["decision_agreement"] is None:
        problems.append(f"decision agreement not measurable on this set: no vertebra was found by both; {enough}")
    elif figures["decision_agreement"] < limits.decision_agreement:
        problems.append(f"decisions agree {figures['decision_agreement']:.2%} (< {limits.decision_agreement:.1%})")
    if figures["vertebrae_not_matched"]:
        problems.append(f"{figures['vertebrae_not_matched']} vertebrae found by one side only")
    if figures["mri_changed"] > limits.mri_changes:
        problems.append(f"the MRI recommendation changed in {figures['mri_changed']} studies")
    if figures["gradcam_min_r"] is None:
        problems.append(f"Grad-CAM agreement not measurable on this set: no vertebra kept its class; {enough}")
    elif figures["gradcam_min_r"] < limits.gradcam_min_r:
        problems.append(f"a Grad-CAM map correlates only {figures['gradcam_min_r']:.3f} (< {limits.gradcam_min_r})")
    for metric, change in figures["metric_change"].items():
        # A figure that could not be measured is no evidence the route keeps it: it fails, it never passes.
        if change is None or not np.isfinite(change):
            need = _METRIC_NEEDS.get(metric, "it could not be computed")
            problems.append(f"{metric.replace('_', ' ')} not measurable on this set: {need}; {enough}")
        elif abs(change) > limits.metric_change:
            problems.append(f"{metric} moved by {change:+.3f} (> {limits.metric_change})")
    return tuple(problems)


def check_set_size(studies: int, first_seed: int = FIRST_SEED) -> None:
    """Refuse, before any study runs, a phantom set too small to judge a route (UsageError naming what it holds)."""
    counts = _class_counts(range(first_seed, first_seed + studies))
    reason = tolerances.gate_set_too_small(
        counts, what=f"{studies} phantom studies", fix=f"check with --studies {_studies_needed(first_seed)} or more"
    )
    if reason is not None:
        raise UsageError(reason)


def _class_counts(seeds: Sequence[int]) -> dict[str, int]:
    from olvf.phantom import phantom_labels

    counts = dict.fromkeys(tolerances.GATE_CLASSES, 0)
    for seed in seeds:
        for label in phantom_labels(seed).values():
            counts[label] += 1
    return counts


def _studies_needed(first_seed: int, limit: int = 10_000) -> int:
    """The fewest phantom studies from ``first_seed`` that hold enough vertebrae of each class."""
    from olvf.phantom import phantom_labels

    counts = dict.fromkeys(tolerances.GATE_CLASSES, 0)
    for n in range(1, limit + 1):
        for label in phantom_labels(first_seed + n - 1).values():
            counts[label] += 1
        if min(counts.values()) >= tolerances.MIN_GATE_VERTEBRAE_PER_CLASS:
            return n
    return limit


def check_route(
    bundle: Bundle,
    name: str,
    *,
    studies: int = 100,
    first_seed: int = FIRST_SEED,
    progress: Progress = lambda _line: None,
) -> RouteCheck:
    """Run route ``name`` and the FP32 reference on ``studies`` phantom studies; judge by its limits."""
    from olvf.phantom import make_phantom, phantom_display

    chosen = route(name)
    if name not in tolerances.ROUTES:
        raise OlvfError(f"{name} computes in FP32: it needs no check; check one of {', '.join(tolerances.ROUTES)}")
    check_set_size(studies, first_seed)
    seeds = range(first_seed, first_seed + studies)
    with (
        open_runtime(bundle, "onnxruntime", precision="fp32", device="cpu") as reference,
        open_runtime(bundle, chosen.backend, precision=chosen.precision) as candidate,
    ):
        _warm(reference, candidate)
        ref_results, got_results, truths = [], [], []
        for n, seed in enumerate(seeds, 1):
            phantom = make_phantom(seed, size=PHANTOM_SIZE)
            image = phantom_display(phantom)
            truths.append({v.level: v.label for v in phantom.levels})
            (ref,) = reference.analyse([image])
            (got,) = candidate.analyse([image])
            ref_results.append(ref)
            got_results.append(got)
            if n % 10 == 0 or n == studies:
                progress(f"      {n}/{studies} phantom studies")
    figures = compare_studies(ref_results, got_results, truths)
    figures["limits"] = vars(tolerances.ROUTES[name])
    figures["phantoms"] = {"seeds": [seeds[0], seeds[-1]], "size": list(PHANTOM_SIZE)}
    figures["cpu"] = cpu_kind()
    problems = judge(name, figures)
    return RouteCheck(name, not problems, figures, problems)


def _warm(*runtimes: Runtime) -> None:
    """One call each first: the first inference of a compiled graph is slower and would skew ``speedup``."""
    for rt in runtimes:
        assert rt.preprocess is not None
        rt.classify(np.zeros((1, *rt.preprocess.input_shape), np.float32))


def verify_demo_route(
    bundle_dir: str | Path, name: str, *, studies: int = 100, progress: Progress = lambda _line: None
) -> tuple[RouteCheck, Manifest | None]:
    """Check a route on phantom studies and, for a demo bundle that passes, record it as verified."""
    bundle = open_bundle(bundle_dir)
    result = check_route(bundle, name, studies=studies, progress=progress)
    if not result.passed or not bundle.manifest.demo:
        return result, None
    seeds = result.figures["phantoms"]["seeds"]
    evidence = f"{studies} phantom studies with known truth (seeds {seeds[0]}-{seeds[1]}), the demo's labelled set"
    return result, record_verified_route(bundle_dir, name, result.figures, evidence=evidence)
