"""Validation: a bundle's study table on a labelled set, and route against route. numpy (OpenCV for pictures) only.

The way data flows (each module imports only those before it):

- :mod:`.labels`: the labelled-set CSV -> :class:`LabelledSet` (studies -> labelled vertebrae);
- :mod:`.predictions`: what a route hands over per study (:class:`StudyPrediction` of :class:`PredictedVertebra`);
- :mod:`.matching`: which prediction is which labelled vertebra; missed ones count as normal, p(fresh) = 0;
- :mod:`.metrics`, :mod:`.detection_metrics`: the arithmetic (AUC, rates, confusion, bootstrap, operating point, mAP);
- :mod:`.evaluate`: :func:`evaluate` -> :class:`ValidationResult`;
- :mod:`.compare`: :func:`compare_routes` -> :class:`RouteComparison`, the clinical parity gate;
- :mod:`.report`: :func:`write_report` (JSON, Markdown, PNG).

Validation never runs a model: the study pipeline produces the predictions.
"""

from olvf.runtime.validation.compare import GateLimits, RouteComparison, RouteDifference, compare_routes
from olvf.runtime.validation.evaluate import MISSED_RULE, ValidationResult, evaluate
from olvf.runtime.validation.labels import LabelledSet, LabelledStudy, LabelledVertebra, read_labels
from olvf.runtime.validation.metrics import Figure, Interval, OperatingPoint
from olvf.runtime.validation.predictions import PredictedVertebra, StudyPrediction
from olvf.runtime.validation.report import write_report

__all__ = [
    "MISSED_RULE",
    "Figure",
    "GateLimits",
    "Interval",
    "LabelledSet",
    "LabelledStudy",
    "LabelledVertebra",
    "OperatingPoint",
    "PredictedVertebra",
    "RouteComparison",
    "RouteDifference",
    "StudyPrediction",
    "ValidationResult",
    "compare_routes",
    "evaluate",
    "read_labels",
    "write_report",
]
