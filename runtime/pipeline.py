"""The study pipeline: radiographs in, complete results out, every entry point's one way to run studies.

    read -> detect -> crop -> classify -> Grad-CAM -> StudyResult (or InputFailure)

``olvf-infer``, ``olvf-bench``, ``olvf-validate``, the engine verification and
the DICOM node call :class:`StudyPipeline`; writers take its results
(:mod:`olvf.runtime.results`) and recompute nothing.

Inputs go in batches of ``batch`` studies: each batch is one detector call
for all its images and one ensemble call for every vertebra of every image,
so studies that arrive together share the models' fixed costs.

Failure isolation: what goes wrong with one input (it cannot be read, its
pixels are unusable) is that input's :class:`InputFailure`, and the others
go on, whatever the batch size. What goes wrong with the bundle or the
backend (a graph that does not load, a GPU that fails mid-run) is no input's
fault: it is raised once and stops the run, without blaming an input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING

import numpy as np

from olvf.errors import BundleError, InputError
from olvf.runtime.cam_regions import CamAnalysis, RegionGeometry, analyse_cams
from olvf.runtime.crops import crop_regions, extract_crops
from olvf.runtime.decision import mri_decision
from olvf.runtime.detection import Detections, Letterbox
from olvf.runtime.manifest import CLASSIFIER_FLAGS
from olvf.runtime.radiograph import MIN_SIDE, Radiograph, RadiographInfo, gray_image, read_radiograph
from olvf.runtime.results import Classification, InputFailure, StageTimes, StudyOutcome, StudyResult

if TYPE_CHECKING:
    from olvf.runtime.session import Runtime  # the runtime imports this module for Runtime.infer

DEFAULT_BATCH = 16  # studies per detector + ensemble call: bounds memory (full-size images stay in RAM) and latency
CROP_MIN_SIDE = 16  # without a detector an input is one vertebra's crop, far smaller than a radiograph
CROP_LEVEL = "crop"
CROP_RULE = "no detector in the bundle: the whole image is one vertebral-body crop"
_DISPLAY_SLACK = 1e-3  # float rounding of a caller's [0, 1] image


@dataclass(frozen=True, eq=False)
class ImageInput:
    """An image the caller already holds: 2-D gray on the display scale [0, 1], with a label for results.

    ``info``: what the reader recorded, when the image was read elsewhere (:func:`read_radiograph`).
    """

    source: str
    pixels: np.ndarray
    info: RadiographInfo | None = None


StudyInput = Path | str | ImageInput


def source_label(item: StudyInput) -> str:
    return item.source if isinstance(item, ImageInput) else str(item)


def array_info(pixels: np.ndarray, source: str) -> RadiographInfo:
    """What a caller's array is, in the reader's terms."""
    rows, columns = pixels.shape
    return RadiographInfo(
        path=source,
        kind="array",
        sop_instance_uid=None,
        modality=None,
        rows=rows,
        columns=columns,
        bits_stored=32,
        photometric_interpretation="MONOCHROME2",
        inverted=False,
        window={
            "source": "given",
            "centre": None,
            "width": None,
            "function": None,
            "alternatives": 0,
            "explanation": "pixels given on the display scale [0, 1]",
            "reason": None,
            "percentiles": None,
            "lut": None,
        },
        pixel_spacing_mm=None,
        spacing_source=None,
        spacing_reason="not known for an array",
        frames=1,
        frame_used=0,
        transfer_syntax=None,
    )


def whole_image(image: np.ndarray) -> Detections:
    """One 'detection' covering the image, for bundles without a detector."""
    height, width = image.shape
    return Detections(
        boxes=np.array([[0, 0, width, height]], np.float32),
        scores=np.full(1, np.nan, np.float32),
        class_ids=np.zeros(1, np.int64),
        levels=(CROP_LEVEL,),
        level_rule=CROP_RULE,
    )


@dataclass
class _Study:
    """One input on its way through a batch."""

    order: int
    source: str
    radiograph: Radiograph
    read_ms: float
    fitted: Letterbox | None = None
    tensor: np.ndarray | None = None
    detections: Detections | None = None
    regions: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    batch: np.ndarray | None = None
    crops_ms: float = 0.0


class StudyPipeline:
    """Run studies on a loaded :class:`Runtime`; see the module docstring.

    ``geometry``: how Grad-CAM maps are divided into regions (which side is anterior).
    ``operating_point``: the p(fresh) at or over which MRI is recommended (default: the bundle's).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        batch: int = DEFAULT_BATCH,
        geometry: RegionGeometry | None = None,
        operating_point: float | None = None,
    ) -> None:
        if runtime.runner is None:
            raise BundleError(
                f"bundle {runtime.bundle.path} has no classifiers; export them into it with olvf-export "
                f"{CLASSIFIER_FLAGS}"
            )
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.runtime = runtime
        self.batch = batch
        self.geometry = geometry or RegionGeometry()
        self.operating_point = runtime.manifest.fresh_operating_point if operating_point is None else operating_point
        if not 0.0 < self.operating_point < 1.0:
            raise ValueError(f"operating point must lie strictly between 0 and 1, got {self.operating_point}")
        self.cascade = runtime.detector is not None
        self._fresh = runtime.classes.index("fresh")

    def run(self, inputs: Iterable[StudyInput]) -> Iterator[StudyOutcome]:
        """Every input's outcome, in input order, batch by batch."""
        pending: list[StudyInput] = []
        for item in inputs:
            pending.append(item)
            if len(pending) == self.batch:
                yield from self.run_batch(pending)
                pending = []
        if pending:
            yield from self.run_batch(pending)

    def run_batch(self, inputs: Sequence[StudyInput]) -> list[StudyOutcome]:
        """One batch: each input read on its own, then one detector call and one ensemble call for all."""
        outcomes: dict[int, StudyOutcome] = {}
        studies: list[_Study] = []
        for order, item in enumerate(inputs):
            try:
                studies.append(self._read(order, item))
            except InputError as exc:
                outcomes[order] = InputFailure(source_label(item), exc)
        studies = self._isolated(studies, outcomes, self._prepare_detection)
        detect_ms = self._detect(studies) if self.cascade else None
        studies = self._isolated(studies, outcomes, self._decode_and_crop)
        for result in self._classify(studies, detect_ms):
            outcomes[result[0]] = result[1]
        return [outcomes[order] for order in sorted(outcomes)]

    # -- stages ------------------------------------------------------------------
    def _read(self, order: int, item: StudyInput) -> _Study:
        started = perf_counter()
        if isinstance(item, ImageInput):
            pixels = gray_image(item.pixels)
            if pixels.min() < -_DISPLAY_SLACK or pixels.max() > 1 + _DISPLAY_SLACK:
                raise InputError(
                    f"{item.source}: pixels range {pixels.min():g}..{pixels.max():g}; give gray values on the "
                    "display scale [0, 1] (divide 8-bit images by 255)"
                )
            info = item.info if item.info is not None else array_info(pixels, item.source)
            radiograph = Radiograph(np.clip(pixels, 0.0, 1.0), info)
        else:
            min_side = MIN_SIDE if self.cascade else CROP_MIN_SIDE
            radiograph = read_radiograph(Path(item), self.runtime.manifest.display, min_side=min_side)
        return _Study(order, source_label(item), radiograph, (perf_counter() - started) * 1e3)

    def _prepare_detection(self, study: _Study) -> None:
        if self.cascade:
            study.tensor, study.fitted = self.runtime.detector_input(study.radiograph.pixels)

    def _detect(self, studies: list[_Study]) -> float:
        """One detector call for the batch; its time, to be shared."""
        if not studies:
            return 0.0
        started = perf_counter()
        raw = self.runtime.run_detector(np.stack([s.tensor for s in studies if s.tensor is not None]))
        elapsed = (perf_counter() - started) * 1e3
        for study, output in zip(studies, raw):
            assert study.fitted is not None
            study.detections = self.runtime.decode(output, study.fitted)
            study.tensor = None  # the letterboxed copy is not needed any more
        return elapsed

    def _decode_and_crop(self, study: _Study) -> None:
        started = perf_counter()
        image = study.radiograph.pixels
        preprocess = self.runtime.preprocess
        assert preprocess is not None  # a pipeline needs classifiers
        if self.cascade:
            assert study.detections is not None
            study.regions = crop_regions(study.detections.boxes, self.runtime.manifest.crops)
            crops = extract_crops(image, study.detections.boxes, self.runtime.manifest.crops)
        else:
            study.detections = whole_image(image)
            study.regions = np.rint(study.detections.boxes).astype(np.int64)
            crops = [image]
        study.batch = preprocess(crops) if crops else np.zeros((0, *preprocess.input_shape), np.float32)
        study.crops_ms = (perf_counter() - started) * 1e3

    def _classify(self, studies: list[_Study], detect_ms: float | None) -> list[tuple[int, StudyResult]]:
        """One ensemble call for every vertebra of the batch, Grad-CAM and its regions, split per study."""
        if not studies:
            return []
        batches = [s.batch for s in studies if s.batch is not None and len(s.batch)]
        started = perf_counter()
        if batches:
            outputs = self.runtime.run_ensemble(np.concatenate(batches))
            ran = perf_counter()
            everything = self.runtime.explain(outputs)
        else:
            ran = perf_counter()
            everything = self.runtime.empty_classification()
        boxes = np.concatenate([s.detections.boxes for s in studies if s.detections is not None])
        regions = np.concatenate([s.regions for s in studies])
        cams = analyse_cams(everything.cam, boxes, regions, self.geometry)
        finished = perf_counter()
        share = len(studies)
        results, start = [], 0
        for study in studies:
            assert study.detections is not None
            end = start + len(study.detections)
            timings = StageTimes(
                read=study.read_ms,
                detect=None if detect_ms is None else detect_ms / share,
                crops=study.crops_ms,
                ensemble=(ran - started) * 1e3 / share,
                gradcam=(finished - ran) * 1e3 / share,
                shared_by=share,
            )
            result = self._result(
                study.source,
                study.radiograph,
                study.detections,
                study.regions,
                everything[start:end],
                cams[start:end],
                timings,
            )
            results.append((study.order, result))
            start = end
        return results

    def finish(
        self,
        source: str,
        radiograph: Radiograph,
        detections: Detections,
        classification: Classification,
        timings: StageTimes,
    ) -> StudyResult:
        """A result from detections and a classification made elsewhere (the benchmark's PyTorch variants):
        crop regions, Grad-CAM regions and the decision derived exactly as for the pipeline's own studies."""
        if self.cascade:
            regions = crop_regions(detections.boxes, self.runtime.manifest.crops)
        else:
            regions = np.rint(detections.boxes).astype(np.int64)
        cams = analyse_cams(classification.cam, detections.boxes, regions, self.geometry)
        return self._result(source, radiograph, detections, regions, classification, cams, timings)

    def _result(
        self,
        source: str,
        radiograph: Radiograph,
        detections: Detections,
        regions: np.ndarray,
        classification: Classification,
        cams: CamAnalysis,
        timings: StageTimes,
    ) -> StudyResult:
        decision = mri_decision(detections.levels, classification.probabilities[:, self._fresh], self.operating_point)
        return StudyResult(
            source=source,
            radiograph=radiograph,
            detections=detections,
            regions=regions,
            classification=classification,
            cam_regions=cams,
            geometry=self.geometry,
            decision=decision,
            timings=timings,
            cascade=self.cascade,
        )

    @staticmethod
    def _isolated(
        studies: list[_Study], outcomes: dict[int, StudyOutcome], step: Callable[[_Study], None]
    ) -> list[_Study]:
        """Apply a per-input step; an input error takes only that input out of the batch."""
        kept = []
        for study in studies:
            try:
                step(study)
            except InputError as exc:
                outcomes[study.order] = InputFailure(study.source, exc)
                continue
            kept.append(study)
        return kept
