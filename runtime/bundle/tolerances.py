"""How far a graph, an engine or a backend may stray from its reference: every limit in one place.

The export gate (PyTorch checkpoint vs the exported graph) and the runtime's
backend verification (a TensorRT engine, ONNX Runtime on a GPU, an FP16 graph
vs ONNX Runtime on CPU with the FP32 graph) use the same limits, chosen by the
precision of the route under test. Each loose value says why it is loose.
"""

from __future__ import annotations

from dataclasses import dataclass

from olvf.vocabulary import CLASSES


@dataclass(frozen=True)
class Tolerances:
    """Largest differences the classifiers of a route may show against their FP32 reference."""

    #: max abs difference of any probability (ensemble and each model)
    probabilities: float
    #: max abs difference of [0, 1]-normalised Grad-CAM maps
    cam: float
    #: max abs difference of the pooled features (what the domain check measures), relative to the largest
    features: float = 1e-4


@dataclass(frozen=True)
class DetectorTolerances:
    """Largest differences of a detector's boxes after NMS against its reference, image by image."""

    #: every reference box must be matched by a box of at least this IoU
    min_iou: float
    #: matched boxes' scores may differ by this much
    max_score_diff: float
    #: boxes per image may differ by this many
    count_slack: int


CLASSIFIERS: dict[str, Tolerances] = {
    # FP32 graphs agree with PyTorch (and its autograd Grad-CAM) to about 1e-6; 1e-4 leaves room for
    # another CPU's kernels without letting a wrong graph through.
    "fp32": Tolerances(probabilities=1e-4, cam=1e-3),
    # FP16 backbones round activations to 11 bits; a trained head amplifies that rounding by its weights'
    # norm: the demo's trained heads move a member's probability by up to 1.4e-2 (ResNeXt-50, ONNX Runtime
    # on CPU; 2.7e-3 with the old untrained heads), maps by a few 1e-2, more where two regions of a map are
    # nearly tied for the peak. 3e-2 leaves room for a GPU's kernels; a wrong graph moves probabilities by
    # tenths. Whether FP16 changes decisions is olvf-validate's question, on a labelled set.
    # Pooled features: measured within 1.4e-3 of their largest on the demo (ONNX Runtime on CPU); 1e-2 leaves
    # room for a GPU's kernels. Their effect on the domain check, measured there: study distances within 0.04.
    "fp16": Tolerances(probabilities=3e-2, cam=0.1, features=1e-2),
}

DETECTORS: dict[str, DetectorTolerances] = {
    # FP32 ONNX against the PyTorch detector: measured raw outputs within 6e-4 px.
    "fp32": DetectorTolerances(min_iou=0.99, max_score_diff=1e-3, count_slack=0),
    # FP16 moves box coordinates by up to about 0.5 px on a 320 px input, and a score right at the
    # confidence threshold may round to either side of it: one box more or fewer is rounding.
    "fp16": DetectorTolerances(min_iou=0.9, max_score_diff=2e-2, count_slack=1),
}

# A top-1 flip between two classes closer than this multiple of the probability tolerance is rounding.
TOP1_TIE_FACTOR = 2.0


def classifiers(precision: str) -> Tolerances:
    return CLASSIFIERS[precision]


def detector(precision: str) -> DetectorTolerances:
    return DETECTORS[precision]


@dataclass(frozen=True)
class RouteLimits:
    """What a reduced-precision CPU route must keep against the FP32 reference on a labelled set
    before it is recorded as verified (see :mod:`olvf.runtime.runners.verified_routes`)."""

    #: share of vertebrae whose predicted class is the reference's
    decision_agreement: float
    #: studies whose MRI recommendation may change: none
    mri_changes: int
    #: every vertebra's fused Grad-CAM map (the one shown) correlated at least this much with the reference's
    gradcam_min_r: float
    #: largest change of accuracy and fresh-fracture sensitivity against the labels
    metric_change: float


# The figures of the reduced-precision issue: BF16 only rounds mantissas, so it is held tighter than INT8.
ROUTES: dict[str, RouteLimits] = {
    "openvino-bf16": RouteLimits(decision_agreement=0.995, mri_changes=0, gradcam_min_r=0.98, metric_change=0.01),
    "openvino-int8": RouteLimits(decision_agreement=0.99, mri_changes=0, gradcam_min_r=0.98, metric_change=0.01),
}


#: the classes a gate set must hold enough vertebrae of (the study's classes, in the heads' order)
GATE_CLASSES = CLASSES
#: vertebrae of each class a labelled set needs before a route may be judged on it. Below this a figure such as
#: fresh sensitivity rests on a handful of vertebrae (one flip moves it by more than 5 %), or cannot be measured at
#: all; a route that "passed" there would have passed on no evidence.
MIN_GATE_VERTEBRAE_PER_CLASS = 20


def gate_set_too_small(counts: dict[str, int], *, what: str, fix: str) -> str | None:
    """Why a set with ``counts`` vertebrae per class cannot judge a route, or None when it can.

    ``what`` names the set in the message ("30 phantom studies"); ``fix`` says how to get a bigger one.
    """
    short = [c for c in GATE_CLASSES if counts.get(c, 0) < MIN_GATE_VERTEBRAE_PER_CLASS]
    if not short:
        return None
    held = ", ".join(f"{counts.get(c, 0)} {c}" for c in GATE_CLASSES)
    return (
        f"{what} hold {held} vertebrae; judging a route needs at least {MIN_GATE_VERTEBRAE_PER_CLASS} of each "
        f"class ({', '.join(short)} short), else its figures rest on a handful of vertebrae or cannot be measured; "
        f"{fix}"
    )
