"""The study pipeline: radiographs in, complete results out, every entry point's one way to run studies.

    read -> header check -> detect -> anatomy check -> crop -> classify -> Grad-CAM -> domain check
         -> StudyResult (assessed, or not assessed with its reason) or InputFailure

``olvf-infer``, ``olvf-bench``, ``olvf-validate``, the engine verification and
the DICOM node call :class:`StudyPipeline`; writers take its results
(:mod:`olvf.runtime.study.results`) and recompute nothing.

Inputs go in batches: each batch is one detector call for all its images
and one ensemble call for every vertebra of every image, so studies that
arrive together share the models' fixed costs. A batch closes at ``batch``
studies or when the images it holds reach ``batch_memory`` bytes, whichever
comes first: full-size images stay in memory until their batch is
classified, so memory, not a count, is what bounds a run. Results are
yielded batch by batch; a caller that writes and drops each one holds at
most one batch, whatever the number of inputs. What one input may cost at
most is :class:`olvf.runtime.inputs.reader.ReadLimits`.

Failure isolation: anything that goes wrong with one input, while it is
read, letterboxed, decoded, cropped or while its result is put together, is
that input's :class:`InputFailure` (an :class:`InputError`; an unexpected
exception is named by its class), and the others go on, whatever the batch
size. What goes wrong with the bundle or the backend (a graph that does not
load, a GPU that fails mid-run: :class:`BundleError`, :class:`BackendError`,
raised by the detector and ensemble calls the batch shares) is no input's
fault: it is raised once and stops the run, without blaming an input.

The intended-use gate (:mod:`olvf.runtime.steps.applicability`) runs inside the
pipeline, so every entry point applies it the same way: a study whose header
contradicts the bundle's intended use is not detected, one whose detections
are not a lateral lumbar column is not classified, and one whose crops lie
outside the bundle's domain keeps no classification; each is a result that is
*not assessed*, with its reason, never a verdict.

Which side of the image is anterior (for the Grad-CAM regions) comes, per
study, from the file's Patient Orientation when it says, else the default;
a ``geometry`` given to the pipeline (the CLI's ``--anterior``) overrides
both. Each report says which was used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from time import perf_counter

import numpy as np

from olvf.errors import BundleError, InputError, OlvfError
from olvf.runtime.bundle.manifest import CLASSIFIER_FLAGS
from olvf.runtime.inputs.dicom_header import DEFAULT_LIMITS, ReadLimits
from olvf.runtime.inputs.images import Radiograph, RadiographInfo, gray_image
from olvf.runtime.inputs.reader import read_radiograph
from olvf.runtime.steps.applicability import (
    ANATOMY,
    DOMAIN,
    Check,
    Gate,
    check_anatomy,
    check_domain,
    check_header,
    no_domain_record,
)
from olvf.runtime.steps.crops import crop_regions, extract_crops
from olvf.runtime.steps.decision import mri_decision, not_assessed, state_targets, vertebra_states
from olvf.runtime.steps.detection import Detections, Letterbox, empty_detections, per_level_names
from olvf.runtime.steps.regions import CamAnalysis, RegionGeometry, analyse_cams, geometry_from_orientation
from olvf.runtime.study.cascade import Cascade
from olvf.runtime.study.results import Classification, InputFailure, StageTimes, StudyOutcome, StudyResult
from olvf.text import printable

DEFAULT_BATCH = 16  # studies per detector + ensemble call, at most
DEFAULT_BATCH_MEMORY = 512 * 2**20  # bytes of images a batch holds before it is run (full-size images stay in RAM)
# A lateral lumbar film spans T12-S1, about six vertebral bodies and their discs from top to bottom: under
# 256 px on its shorter side a body would be under about 32 px, a thumbnail that gives no verdict worth having.
CASCADE_MIN_SIDE = 256
CROP_MIN_SIDE = 16  # without a detector an input is one vertebra's crop, far smaller than a radiograph
# Crops per ensemble call on CPU. ONNX Runtime's CPU arena grows to the largest call and keeps it: the
# demo ensemble (ResNet-50 + DenseNet-161 + ResNeXt-50 at 224) peaks at 1.1 GB in 8-crop calls and at
# 2.0 GB in 32-crop calls, for the same time per crop. GPUs keep the graph's maximum (their memory is their own).
CPU_MAX_CROPS = 8
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
    geometry: RegionGeometry
    fitted: Letterbox | None = None
    tensor: np.ndarray | None = None
    detections: Detections | None = None
    regions: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    batch: np.ndarray | None = None
    crops_ms: float = 0.0
    #: the intended-use checks so far; ``refused``: one failed, so the later stages leave this study alone
    checks: list[Check] = field(default_factory=list)
    refused: bool = False
    checks_ms: float = 0.0

    @property
    def held_bytes(self) -> int:
        """What this study keeps in memory until its batch is classified."""
        held = self.radiograph.pixels.nbytes
        for array in (self.tensor, self.batch):
            held += 0 if array is None else array.nbytes
        return held


def unexpected_failure(source: str, exc: BaseException) -> InputError:
    """An exception nobody anticipated while analysing one input, as that input's one-line error."""
    text = " ".join(str(exc).split()) or "no message"
    return InputError(
        f"{printable(source)}: could not be analysed ({type(exc).__name__}: {printable(text[:300])}); "
        "the file is unlike any radiograph olvf knows: check it, and report it if it is a valid image"
    )


def failure(source: str, exc: Exception) -> InputFailure:
    """The outcome of an input whose analysis raised ``exc``; bundle and backend errors are not an input's."""
    if isinstance(exc, OlvfError) and not isinstance(exc, InputError):
        raise exc
    error = exc if isinstance(exc, InputError) else unexpected_failure(source, exc)
    return InputFailure(source, error)


class StudyPipeline:
    """Run studies on a bundle's started :class:`Cascade` (a :class:`Runtime` is one); see the module docstring.

    ``batch`` and ``batch_memory``: a batch closes at this many studies or at
    this many bytes of images held, whichever comes first. ``geometry``: how
    Grad-CAM maps are divided into regions for every study (which side is
    anterior), overriding each file's Patient Orientation; None: per study.
    ``operating_point``: the p(fresh) at or over which MRI is recommended
    (default: the bundle's). ``limits``: what one input may cost to read.
    ``max_crops``: crops per ensemble call (default: CPU_MAX_CROPS on CPU, the
    graph's maximum elsewhere); the batch's crops go in as many calls as it takes.
    ``gate``: the intended-use checks (default: the bundle's intended use, no override).
    """

    def __init__(
        self,
        cascade: Cascade,
        *,
        batch: int = DEFAULT_BATCH,
        batch_memory: int = DEFAULT_BATCH_MEMORY,
        geometry: RegionGeometry | None = None,
        operating_point: float | None = None,
        limits: ReadLimits = DEFAULT_LIMITS,
        max_crops: int | None = None,
        gate: Gate | None = None,
    ) -> None:
        if cascade.runner is None:
            raise BundleError(
                f"bundle {cascade.bundle.path} has no classifiers; export them into it with olvf-export "
                f"{CLASSIFIER_FLAGS}"
            )
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        if batch_memory < 1:
            raise ValueError(f"batch_memory must be at least 1 byte, got {batch_memory}")
        self.cascade = cascade
        self.batch = batch
        self.batch_memory = batch_memory
        self.geometry = geometry
        self.limits = limits
        self.operating_point = cascade.manifest.fresh_operating_point if operating_point is None else operating_point
        if not 0.0 < self.operating_point < 1.0:
            raise ValueError(f"operating point must lie strictly between 0 and 1, got {self.operating_point}")
        self.detects = cascade.detector is not None
        self.gate = gate or Gate(cascade.manifest.intended_use)
        detector = cascade.manifest.detector
        self.named_levels = detector is not None and per_level_names(detector.names)
        self._fresh = cascade.classes.index("fresh")
        if max_crops is not None and max_crops < 1:
            raise ValueError(f"max_crops must be at least 1, got {max_crops}")
        on_cpu = str(getattr(cascade.runner, "device", "cpu")).lower().startswith("cpu")
        self.max_crops = max_crops or (CPU_MAX_CROPS if on_cpu else None)

    def run(self, inputs: Iterable[StudyInput]) -> Iterator[StudyOutcome]:
        """Every input's outcome, in input order, batch by batch (see the module docstring)."""
        pending: list[_Study | InputFailure] = []
        held = studies = 0
        for order, item in enumerate(inputs):
            admitted = self._admit(order, item)
            if isinstance(admitted, InputFailure) and not studies:
                yield admitted  # nothing waits before it: no need to hold it back
                continue
            pending.append(admitted)
            if isinstance(admitted, _Study):
                studies += 1
                held += admitted.held_bytes
            if studies >= self.batch or held >= self.batch_memory:
                yield from self._finish_batch(pending)
                pending, held, studies = [], 0, 0
        if pending:
            yield from self._finish_batch(pending)

    def run_batch(
        self, inputs: Sequence[StudyInput], *, refusals: Mapping[int, str] | None = None
    ) -> list[StudyOutcome]:
        """These inputs as one batch, whatever their number: one detector call and one ensemble call for all.

        ``refusals``: input index -> why the caller (olvf-serve's screening rule) refuses it; such an input is
        read, for its picture, and not assessed with that reason.
        """
        refusals = refusals or {}
        admitted = [self._admit(order, item, refusals.get(order)) for order, item in enumerate(inputs)]
        return list(self._finish_batch(admitted))

    # -- stages ------------------------------------------------------------------
    def _admit(self, order: int, item: StudyInput, refusal: str | None = None) -> _Study | InputFailure:
        """Read one input and letterbox it for the detector; any failure is this input's."""
        label = source_label(item)
        try:
            study = self._read(order, item)
            self._check(study, partial(check_header, study.radiograph.info, self.gate.intended_use))
            if refusal is not None:  # no override can lift it: it is the caller's rule, not the gate's
                study.checks.append(Check("site rule", False, refusal))
                study.refused = True
            if not study.refused:
                self._prepare_detection(study)
        except Exception as exc:  # noqa: BLE001 - see failure(): an input's problem, or re-raised
            return failure(label, exc)
        return study

    def _finish_batch(self, pending: list[_Study | InputFailure]) -> list[StudyOutcome]:
        """Detect, crop and classify the batch's studies; every outcome in input order."""
        outcomes: dict[int, StudyOutcome] = {}
        studies: list[_Study] = []
        for position, entry in enumerate(pending):
            if isinstance(entry, InputFailure):
                outcomes[position] = entry
            else:
                entry.order = position
                studies.append(entry)
        detect_ms = self._detect(studies, outcomes) if self.detects else None
        studies = self._isolated(studies, outcomes, self._decode_and_crop)
        for order, outcome in self._classify(studies, detect_ms):
            outcomes[order] = outcome
        return [outcomes[order] for order in sorted(outcomes)]

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
            min_side = CASCADE_MIN_SIDE if self.detects else CROP_MIN_SIDE
            radiograph = read_radiograph(
                Path(item), self.cascade.manifest.display, min_side=min_side, limits=self.limits
            )
        geometry = self.geometry or geometry_from_orientation(radiograph.info.patient_orientation)
        return _Study(order, source_label(item), radiograph, (perf_counter() - started) * 1e3, geometry)

    def _check(self, study: _Study, check: Check | Callable[[], Check]) -> None:
        started = perf_counter()
        if callable(check):
            check = check()
        study.checks_ms += (perf_counter() - started) * 1e3
        study.checks.append(check)
        study.refused = study.refused or self.gate.refuses(check)

    def _prepare_detection(self, study: _Study) -> None:
        if self.detects:
            study.tensor, study.fitted = self.cascade.detector_input(study.radiograph.pixels)

    def _detect(self, studies: list[_Study], outcomes: dict[int, StudyOutcome]) -> float:
        """One detector call for the batch (a backend failure stops the run); its time, to be shared."""
        running = [s for s in studies if not s.refused]
        if not running:
            return 0.0
        started = perf_counter()
        raw = self.cascade.run_detector(np.stack([s.tensor for s in running if s.tensor is not None]))
        elapsed = (perf_counter() - started) * 1e3
        for study, output in zip(running, raw):
            assert study.fitted is not None
            study.tensor = None  # the letterboxed copy is not needed any more
            try:
                study.detections = self.cascade.decode(output, study.fitted)
                self._check(study, partial(self._anatomy, study.detections, study.radiograph))
            except Exception as exc:  # noqa: BLE001 - decoding one image's output is that image's
                outcomes[study.order] = failure(study.source, exc)
        studies[:] = [s for s in studies if s.order not in outcomes]
        return elapsed

    def _anatomy(self, detections: Detections, radiograph: Radiograph) -> Check:
        return check_anatomy(
            detections.boxes,
            detections.levels,
            rules=self.gate.intended_use.anatomy,
            spacing_mm=radiograph.info.pixel_spacing_mm,
            named_levels=self.named_levels,
        )

    def _decode_and_crop(self, study: _Study) -> None:
        started = perf_counter()
        image = study.radiograph.pixels
        preprocess = self.cascade.preprocess
        assert preprocess is not None  # a pipeline needs classifiers
        if study.refused:  # not detected, or not a column: nothing is classified
            study.detections = empty_detections("not assessed: no vertebra is classified")
            study.batch = np.zeros((0, *preprocess.input_shape), np.float32)
            return
        if self.detects:
            assert study.detections is not None
            study.regions = crop_regions(study.detections.boxes, self.cascade.manifest.crops)
            crops = extract_crops(image, study.detections.boxes, self.cascade.manifest.crops)
        else:
            study.detections = whole_image(image)
            study.regions = np.rint(study.detections.boxes).astype(np.int64)
            crops = [image]
            study.checks.append(Check(ANATOMY, None, f"not checked: {CROP_RULE}"))
        study.batch = preprocess(crops) if crops else np.zeros((0, *preprocess.input_shape), np.float32)
        study.crops_ms = (perf_counter() - started) * 1e3

    def _classify(self, studies: list[_Study], detect_ms: float | None) -> list[tuple[int, StudyOutcome]]:
        """One ensemble call for every vertebra of the batch, then Grad-CAM, its regions and the result per study."""
        if not studies:
            return []
        batches = [s.batch for s in studies if s.batch is not None and len(s.batch)]
        started = perf_counter()
        if batches:
            crops = np.concatenate(batches)
            step = self.max_crops or len(crops)
            parts = [self.cascade.run_ensemble(crops[i : i + step]) for i in range(0, len(crops), step)]
            del crops
            outputs = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            ran = perf_counter()
            # Grad-CAM of what each vertebra is shown as (a suspected fresh fracture: the fresh map), not of its
            # top class: the map must be the evidence for the finding the picture names.
            probabilities = outputs[self.cascade.manifest.ensemble.probabilities_output]
            states = vertebra_states(probabilities, self.cascade.classes, self.operating_point)
            everything = self.cascade.explain(outputs, state_targets(states, self.cascade.classes))
        else:
            ran = perf_counter()
            everything = self.cascade.empty_classification()
        for study in studies:
            study.batch = None  # the crops went to the ensemble
        explained = perf_counter()
        share = len(studies)
        results: list[tuple[int, StudyOutcome]] = []
        start = 0
        for study in studies:
            assert study.detections is not None
            end = start + len(study.detections)
            try:
                classification = everything[start:end]
                if not study.refused:  # before the times are taken: the domain distance is part of the checks'
                    self._check(study, partial(self._domain, classification))
                region_started = perf_counter()
                cams = analyse_cams(classification.cam, study.detections.boxes, study.regions, study.geometry)
                timings = StageTimes(
                    read=study.read_ms,
                    detect=None if detect_ms is None else detect_ms / share,
                    crops=study.crops_ms,
                    ensemble=(ran - started) * 1e3 / share,
                    gradcam=(explained - ran) * 1e3 / share + (perf_counter() - region_started) * 1e3,
                    shared_by=share,
                    applicability=study.checks_ms,
                )
                outcome: StudyOutcome = self._result(
                    study.source,
                    study.radiograph,
                    study.detections,
                    study.regions,
                    classification,
                    cams,
                    timings,
                    study.geometry,
                    study.checks,
                )
            except Exception as exc:  # noqa: BLE001 - one study's result is that study's
                outcome = failure(study.source, exc)
            results.append((study.order, outcome))
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
        if self.detects:
            regions = crop_regions(detections.boxes, self.cascade.manifest.crops)
        else:
            regions = np.rint(detections.boxes).astype(np.int64)
        geometry = self.geometry or geometry_from_orientation(radiograph.info.patient_orientation)
        cams = analyse_cams(classification.cam, detections.boxes, regions, geometry)
        started = perf_counter()
        checks = [check_header(radiograph.info, self.gate.intended_use)]
        if self.detects:
            checks.append(self._anatomy(detections, radiograph))
        checks.append(self._domain(classification))
        timings = dataclasses.replace(timings, applicability=(perf_counter() - started) * 1e3)
        return self._result(source, radiograph, detections, regions, classification, cams, timings, geometry, checks)

    def _domain(self, classification: Classification) -> Check:
        """The study's crops against the bundle's domain, as its own networks see them."""
        domain = self.cascade.domain
        if domain is None:
            return no_domain_record()
        if not classification.features:
            return Check(DOMAIN, None, "not checked: this backend gave no pooled features")
        distances = domain.vertebra_distances(classification.features)
        fitted = domain.spec.fitted_on
        what = str(fitted.get("description") or fitted.get("what") or "the studies it was fitted on")
        return check_domain(distances, domain.study_distance(distances), domain.threshold, what)

    def _result(
        self,
        source: str,
        radiograph: Radiograph,
        detections: Detections,
        regions: np.ndarray,
        classification: Classification,
        cams: CamAnalysis,
        timings: StageTimes,
        geometry: RegionGeometry,
        checks: Sequence[Check],
    ) -> StudyResult:
        applicability = self.gate.decide(checks)
        if applicability.assessed:
            fresh = classification.probabilities[:, self._fresh]
            states = vertebra_states(classification.probabilities, classification.classes, self.operating_point)
            decision = mri_decision(detections.levels, fresh, self.operating_point, states)
        else:  # withheld whole: no vertebra's class, map or probability leaves the pipeline
            assert applicability.reason is not None
            decision = not_assessed(applicability.reason, self.operating_point)
            detections = empty_detections("not assessed: no vertebra is classified")
            regions = np.zeros((0, 4), np.int64)
            classification = self.cascade.empty_classification()
            cams = analyse_cams(classification.cam, detections.boxes, regions, geometry)
        return StudyResult(
            source=source,
            radiograph=radiograph,
            detections=detections,
            regions=regions,
            classification=classification,
            cam_regions=cams,
            geometry=geometry,
            decision=decision,
            timings=timings,
            applicability=applicability,
            cascade=self.detects,
        )

    @staticmethod
    def _isolated(
        studies: list[_Study], outcomes: dict[int, StudyOutcome], step: Callable[[_Study], None]
    ) -> list[_Study]:
        """Apply a per-input step; any failure of an input takes only that input out of the batch."""
        kept = []
        for study in studies:
            try:
                step(study)
            except Exception as exc:  # noqa: BLE001 - see failure(): an input's problem, or re-raised
                outcomes[study.order] = failure(study.source, exc)
                continue
            kept.append(study)
        return kept
