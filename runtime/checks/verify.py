"""Does a backend give the bundle's answers? Checked on the machine that will run it.

The candidate (a TensorRT engine, ONNX Runtime on a GPU, an FP16 graph) runs
the same inputs as the reference, ONNX Runtime on CPU with the FP32 graphs:
the ensemble on crops cut from a phantom radiograph and on random crops, the
detector on the phantom and on noise. Probabilities, Grad-CAM maps and boxes
must agree within the FP16 tolerances of the export gate.

Lives in the runtime (no torch) because it runs where engines are built: on
the ER workstation or the Jetson, which have no exporter installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from olvf.errors import ParityError
from olvf.runtime.bundle import tolerances
from olvf.runtime.bundle.tolerances import DetectorTolerances, Tolerances
from olvf.runtime.runners.selection import Candidate
from olvf.runtime.steps.crops import extract_crops
from olvf.runtime.steps.detection import box_iou, candidates, letterbox, nms
from olvf.runtime.study.runtime import Runtime


def compare_detections(
    expected: np.ndarray, got: np.ndarray, layout: str, nc: int, *, conf: float, iou: float
) -> dict[str, Any]:
    """Boxes after NMS from two raw outputs of the same batch: counts, matched IoU, score difference."""
    worst_iou, worst_score, counts = 1.0, 0.0, []
    for e_raw, g_raw in zip(expected, got):
        e = candidates(e_raw, layout, nc, conf)
        g = candidates(g_raw, layout, nc, conf)
        e_keep, g_keep = nms(e[0], e[1], iou, e[2]), nms(g[0], g[1], iou, g[2])
        e_boxes, g_boxes = e[0][e_keep], g[0][g_keep]
        counts.append([len(e_boxes), len(g_boxes)])  # lists: the figures round-trip through JSON
        if len(e_boxes) and len(g_boxes):
            overlap = box_iou(e_boxes, g_boxes)
            worst_iou = min(worst_iou, float(overlap.max(axis=1).min()))
            match = overlap.argmax(axis=1)
            worst_score = max(worst_score, float(np.abs(e[1][e_keep] - g[1][g_keep][match]).max()))
        elif len(e_boxes) != len(g_boxes):
            worst_iou = 0.0
    return {"boxes_per_image": counts, "min_matched_iou": worst_iou, "max_score_diff": worst_score}


def detector_problems(figures: dict[str, Any], limits: DetectorTolerances) -> list[str]:
    """What in :func:`compare_detections`' figures is over ``limits``, one phrase each."""
    problems = [
        f"image {i}: {g} boxes instead of {e}"
        for i, (e, g) in enumerate(figures["boxes_per_image"])
        if abs(e - g) > limits.count_slack
    ]
    if figures["min_matched_iou"] < limits.min_iou:
        problems.append(f"a box moved (IoU {figures['min_matched_iou']:.3f} < {limits.min_iou})")
    if figures["max_score_diff"] > limits.max_score_diff:
        problems.append(f"scores differ by {figures['max_score_diff']:.1e} (> {limits.max_score_diff:.0e})")
    return problems


def phantom_image(seed: int = 0) -> tuple[np.ndarray, Any]:
    """A phantom radiograph on the display scale [0, 1], as the reader shows it, and its truth."""
    from olvf.phantom import make_phantom, phantom_display

    phantom = make_phantom(seed, size=(1250, 1000))
    return phantom_display(phantom), phantom


def compare_runtimes(
    candidate: Runtime,
    reference: Runtime,
    limits: Tolerances = tolerances.CLASSIFIERS["fp16"],
    detector_limits: DetectorTolerances = tolerances.DETECTORS["fp16"],
) -> dict[str, Any]:
    """Figures of candidate against reference; raises ParityError over the limits."""
    image, phantom = phantom_image()
    figures: dict[str, Any] = {}
    problems: list[str] = []
    if reference.runner is not None:
        assert reference.preprocess is not None
        boxes = np.array([level.box for level in phantom.levels], np.float32)
        crops = reference.preprocess(extract_crops(image, boxes, reference.manifest.crops))
        noise = np.random.default_rng(0).standard_normal((3, *crops.shape[1:])).astype(np.float32)
        batch = np.concatenate([crops, noise])
        want = reference.classify(batch)
        got = candidate.classify(batch, target=want.target)  # the same class's Grad-CAM on both sides
        prob = float(np.abs(want.probabilities - got.probabilities).max())
        models = max(
            float(np.abs(want.model_probabilities[m] - got.model_probabilities[m]).max())
            for m in want.model_probabilities
        )
        cam = max(float(np.abs(want.cams[m] - got.cams[m]).max()) for m in want.cams)
        figures["ensemble"] = {
            "crops": len(batch),
            "probabilities_max_abs_diff": prob,
            "model_probabilities_max_abs_diff": models,
            "gradcam_max_abs_diff": cam,
            "top1_agreement": float((want.predictions == got.predictions).mean()),
        }
        if not max(prob, models) <= limits.probabilities:
            problems.append(f"probabilities differ by {max(prob, models):.2e} (> {limits.probabilities:.0e})")
        if not cam <= limits.cam:
            problems.append(f"Grad-CAM differs by {cam:.2e} (> {limits.cam:.0e})")
    if reference.detector is not None and reference.manifest.detector is not None:
        spec = reference.manifest.detector
        noise = np.random.default_rng(1).integers(0, 256, image.shape).astype(np.float32) / np.float32(255)
        batch = np.stack([letterbox(i, spec.input_size)[0] for i in (image, noise)])
        detector = compare_detections(
            _raw(reference, batch), _raw(candidate, batch), spec.layout, len(spec.names), conf=spec.conf, iou=spec.iou
        )
        figures["detector"] = detector
        found = detector_problems(detector, detector_limits)
        if found:
            problems.append(f"detector boxes differ ({'; '.join(found)})")
    if problems:
        raise ParityError(f"{candidate.backend} does not reproduce the bundle: {'; '.join(problems)}", figures)
    return figures


def _raw(rt: Runtime, batch: np.ndarray) -> np.ndarray:
    assert rt.detector is not None
    spec = rt.detector.inputs[0]
    outputs = [
        next(iter(rt.detector.run({spec.name: batch[i : i + 1].astype(spec.dtype)}).values()))
        for i in range(len(batch))
    ]
    return np.concatenate(outputs).astype(np.float32)


@dataclass(frozen=True)
class Check:
    """One backend of this machine against the CPU FP32 reference."""

    label: str
    status: str  # "pass", "fail" or "skipped"
    figures: dict[str, Any]
    reason: str = ""
    route: Candidate | None = None  # what was run, so that a passing route can be validated clinically next

    def line(self) -> str:
        if self.status == "skipped":
            return f"{self.label}: skipped: {self.reason}"
        return f"{self.label}: {self.status}  {summarise(self.figures)}" + (f"  ({self.reason})" if self.reason else "")


def summarise(figures: dict[str, Any]) -> str:
    parts = []
    if "ensemble" in figures:
        e = figures["ensemble"]
        parts.append(
            f"probabilities {max(e['probabilities_max_abs_diff'], e['model_probabilities_max_abs_diff']):.1e}, "
            f"Grad-CAM {e['gradcam_max_abs_diff']:.1e}, top-1 {e['top1_agreement']:.0%}"
        )
    if "detector" in figures:
        d = figures["detector"]
        counts = ", ".join(f"{g}/{e}" for e, g in d["boxes_per_image"])
        parts.append(f"boxes {counts}, IoU >= {d['min_matched_iou']:.3f}")
    return "; ".join(parts)


def openvino_missing() -> str | None:
    import importlib.util

    return None if importlib.util.find_spec("openvino") else "OpenVINO is not installed (pip install 'olvf[openvino]')"


def backend_candidates(manifest: Any) -> list[Candidate]:
    """Every route besides the reference that this machine might run, with a reason where it cannot."""
    from olvf.runtime.runners.selection import ort_gpu_missing

    no_cuda = ort_gpu_missing()
    precisions = [p for p in ("fp32", "fp16") if any(g.precision == p for g in manifest.graphs)]
    found = []
    if "fp16" in precisions:
        found.append(Candidate("ONNX Runtime CPU, FP16 graphs", "onnxruntime", "fp16", {"device": "cpu"}))
    for precision in precisions:
        label = f"ONNX Runtime CUDA, {precision.upper()} graphs"
        found.append(Candidate(label, "onnxruntime", precision, {"device": "cuda"}, skip=no_cuda))
    # OpenVINO FP32 computes what the reference computes; its BF16 and INT8 routes are judged by decisions on a
    # labelled set instead (olvf.runtime.checks.routes, olvf-validate), not by these tolerances.
    found.append(Candidate("OpenVINO CPU, FP32 graphs", "openvino", "fp32", {}, skip=openvino_missing()))
    no_engines = None if manifest.engines else "the bundle has no engines (olvf-infer --rebuild-engines builds them)"
    found.append(Candidate("TensorRT engines", "tensorrt", None, {}, skip=no_engines))
    return found


def verify_bundle(bundle: Any, progress: Any = lambda _line: None) -> list[Check]:
    """Every backend this machine has, against ONNX Runtime on CPU with the FP32 graphs."""
    from olvf.errors import BackendError, BundleError
    from olvf.runtime.study.runtime import open_runtime

    checks = []
    with open_runtime(bundle, "onnxruntime", precision="fp32", device="cpu") as reference:
        for route in backend_candidates(bundle.manifest):
            if route.skip is not None:
                checks.append(Check(route.label, "skipped", {}, route.skip))
                continue
            progress(f"checking {route.label} against ONNX Runtime on CPU (FP32)")
            try:
                with open_runtime(bundle, route.backend, precision=route.precision, **route.options) as candidate:
                    checks.append(Check(route.label, "pass", compare_runtimes(candidate, reference), route=route))
            except ParityError as exc:
                checks.append(Check(route.label, "fail", exc.figures, str(exc)))
            except (BackendError, BundleError) as exc:
                # TensorRT missing, an engine of another machine: not a disagreement, but said.
                checks.append(Check(route.label, "skipped", {}, str(exc)))
    return checks
