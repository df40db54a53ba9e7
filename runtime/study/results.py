"""What the study pipeline hands to writers: complete, immutable results, never re-derived downstream.

A :class:`StudyResult` holds everything a writer needs (the radiograph as
read, the vertebrae found, the crop regions actually cut, the ensemble's
probabilities, the Grad-CAM maps and where they point, stage timings), so
the report, the overlay and the DICOM writers are built from the same
numbers and none recomputes a stage. An input that could not be used is an
:class:`InputFailure` carrying its error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from olvf.errors import OlvfError
from olvf.runtime.inputs.images import Radiograph
from olvf.runtime.steps.applicability import Applicability
from olvf.runtime.steps.decision import MriDecision
from olvf.runtime.steps.detection import Detections
from olvf.runtime.steps.regions import CamAnalysis, RegionGeometry


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous
class Classification:
    """What the ensemble says about a batch of N crops.

    ``cams``/``cam`` are Grad-CAM maps at the crop's input resolution, float32
    in [0, 1], each min-max normalised per crop, for ``target`` (the
    ensemble's predicted class unless another was asked for). ``features``:
    each model's pooled features (N, K) float32, what the domain check
    (:mod:`olvf.runtime.bundle.domain`) measures; empty for bundles whose graph
    does not output them.
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray
    model_probabilities: dict[str, np.ndarray]
    cams: dict[str, np.ndarray]
    cam: np.ndarray
    target: np.ndarray = field(repr=False)
    features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def predictions(self) -> np.ndarray:
        """Index of the most probable class per crop."""
        return self.probabilities.argmax(axis=1)

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] for i in self.predictions]

    def __len__(self) -> int:
        return len(self.probabilities)

    def __getitem__(self, index: slice) -> Classification:
        """The results of a contiguous run of crops (one study's vertebrae)."""
        return Classification(
            classes=self.classes,
            probabilities=self.probabilities[index],
            model_probabilities={k: v[index] for k, v in self.model_probabilities.items()},
            cams={k: v[index] for k, v in self.cams.items()},
            cam=self.cam[index],
            target=self.target[index],
            features={k: v[index] for k, v in self.features.items()},
        )


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds per stage of one study.

    The detector and the ensemble run once for all studies of a batch: each
    study reports ``1 / shared_by`` of those calls. ``detect`` is None
    without a detector.
    """

    read: float
    detect: float | None
    crops: float
    ensemble: float
    gradcam: float
    shared_by: int = 1
    #: the intended-use checks (header, anatomy, domain distance): the price of saying "not for me"
    applicability: float = 0.0

    @property
    def classify(self) -> float:
        """Crops, ensemble and Grad-CAM together: the classification of this study's vertebrae."""
        return self.crops + self.ensemble + self.gradcam

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "detect": self.detect,
            "crops": self.crops,
            "ensemble": self.ensemble,
            "gradcam": self.gradcam,
            "applicability": self.applicability,
        }


@dataclass(frozen=True, eq=False)
class StudyResult:
    """One image through the whole cascade.

    ``source``: the input as the caller named it (a path as given, or a label
    for an array); it is not written anywhere patient-facing by the pipeline.
    ``regions`` (N, 4) are the crop regions the classifiers saw, in original
    pixels (the grown, squared boxes; the whole image without a detector).
    ``cam_regions`` says where each fused Grad-CAM map lies on its vertebra.
    ``decision`` is the study's MRI verdict at the operating point used.
    ``cascade`` is False for bundles without a detector, where the whole image
    was one crop. ``applicability`` says whether the study is one the bundle
    was made for; a study that is not (``assessed`` False) has no vertebrae,
    no classification and no verdict here: what the detector found is kept in
    the anatomy check's figures, for the record, never as a finding.
    """

    source: str
    radiograph: Radiograph
    detections: Detections
    regions: np.ndarray
    classification: Classification
    cam_regions: CamAnalysis
    geometry: RegionGeometry
    decision: MriDecision
    timings: StageTimes
    applicability: Applicability
    cascade: bool = True

    @property
    def assessed(self) -> bool:
        return self.applicability.assessed

    def __len__(self) -> int:
        return len(self.detections)


@dataclass(frozen=True)
class InputFailure:
    """An input that gave no result, and why (its error's class decides the exit code)."""

    source: str
    error: OlvfError


StudyOutcome = StudyResult | InputFailure
