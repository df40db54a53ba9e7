"""Does a backend give the bundle's answers? Checked on the machine that will run it.

The candidate (a TensorRT engine, ONNX Runtime on a GPU, an FP16 graph) runs
the same inputs as the reference, ONNX Runtime on CPU with the FP32 graphs:
the ensemble on random crops and on crops cut from a phantom radiograph, the
detector on the phantom and on noise. Probabilities, Grad-CAM maps and boxes
must agree within the FP16 tolerances of the export gate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from olvf.errors import ParityError
from olvf.export.detector import compare_detections
from olvf.export.parity import TOLERANCES, Tolerances
from olvf.runtime.crops import extract_crops
from olvf.runtime.detection import letterbox
from olvf.runtime.session import Runtime


def phantom_image(seed: int = 0) -> tuple[np.ndarray, Any]:
    """A phantom radiograph as the runtime sees it (gray values 0..255), and its truth."""
    from olvf.phantom import make_phantom

    phantom = make_phantom(seed, size=(1250, 1000))
    low = phantom.window_center - phantom.window_width / 2
    return np.clip((phantom.pixels - low) / phantom.window_width, 0, 1).astype(np.float32) * 255, phantom


def compare_runtimes(
    candidate: Runtime, reference: Runtime, tolerances: Tolerances = TOLERANCES["fp16"]
) -> dict[str, Any]:
    """Figures of candidate against reference; raises ParityError over tolerance."""
    image, phantom = phantom_image()
    figures: dict[str, Any] = {}
    problems: list[str] = []
    if reference.runner is not None:
        assert reference.preprocess is not None
        boxes = np.array([level.box for level in phantom.levels], np.float32)
        crops = reference.preprocess(extract_crops(image, boxes, reference.manifest.crops))
        noise = np.random.default_rng(0).standard_normal((3, *crops.shape[1:])).astype(np.float32)
        batch = np.concatenate([crops, noise])
        want, got = reference.classify(batch), candidate.classify(batch, target=reference.classify(batch).target)
        prob = float(np.abs(want.probabilities - got.probabilities).max())
        cam = max(float(np.abs(want.cams[m] - got.cams[m]).max()) for m in want.cams)
        figures["ensemble"] = {"crops": len(batch), "probabilities_max_abs_diff": prob, "gradcam_max_abs_diff": cam}
        if prob > tolerances.probabilities:
            problems.append(f"probabilities differ by {prob:.2e} (> {tolerances.probabilities:.0e})")
        if cam > tolerances.cam:
            problems.append(f"Grad-CAM differs by {cam:.2e} (> {tolerances.cam:.0e})")
    if reference.detector is not None and reference.manifest.detector is not None:
        spec = reference.manifest.detector
        noise = np.random.default_rng(1).integers(0, 256, image.shape).astype(np.float32)
        batch = np.stack([letterbox(i, spec.input_size)[0] for i in (image, noise)])
        want_raw = _raw(reference, batch)
        got_raw = _raw(candidate, batch)
        detector = compare_detections(want_raw, got_raw, spec.layout, len(spec.names), conf=spec.conf, iou=spec.iou)
        figures["detector"] = detector
        if any(abs(e - g) > 1 for e, g in detector["boxes_per_image"]) or detector["min_matched_iou"] < 0.9:
            problems.append(f"detector boxes differ ({detector})")
    if problems:
        raise ParityError(f"{candidate.backend} does not reproduce the bundle: {'; '.join(problems)}")
    return figures


def _raw(rt: Runtime, batch: np.ndarray) -> np.ndarray:
    assert rt.detector is not None
    name = rt.detector.inputs[0].name
    outputs = [next(iter(rt.detector.run({name: batch[i : i + 1]}).values())) for i in range(len(batch))]
    return np.concatenate(outputs).astype(np.float32)
