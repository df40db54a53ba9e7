"""``olvf-infer``: radiographs in, a report a clinician can read out.

    olvf-infer [--bundle engines] [--out olvf-out] [--json] [--force] INPUT...
    olvf-infer --rebuild-engines [--bundle engines] [INPUT...]

INPUT: files, folders or globs (:mod:`olvf.runtime.batch`). Every input is
read first (a bad file costs only itself), then the readable ones go through
the cascade in chunks of ``CHUNK``: one detector call and one ensemble call
per chunk. Each study gets a folder under ``--out`` holding ``report.json``,
``overlay.png`` and one ``<level>_gradcam.png`` per vertebra, built in a
staging folder and renamed into place, so no half-written study remains. An
existing study folder is replaced only with ``--force``.

``--backend auto`` (the default) runs TensorRT engines built on this
machine, else ONNX Runtime on the GPU, else on CPU; the summary and each
report say which ran and why. ``--rebuild-engines`` (always) and
``--build-engines-if-needed`` (when this machine has no current engines, as
the Jetson container does on its first start) build and verify TensorRT
engines into the bundle before any input is read.

A bundle without a detector keeps the earlier behaviour: each image is one
vertebral-body crop, classified whole; the report and summary say so.

Exit code: 0 when every input gave a report; otherwise the code of the first
failed input in argument order (3 an input cannot be used, 8 its output
exists), after the others were still analysed. A bundle or backend problem
stops everything (4, 7), as does a refused engine build (6) unless it was
``--build-engines-if-needed`` with inputs under ``--backend auto``, which then
runs on ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from olvf.cli_main import run_main
from olvf.errors import BackendError, BundleError, InputError, OlvfError, OutputExistsError, ParityError
from olvf.runtime.atomic import check_replaceable, staged_directory
from olvf.runtime.batch import Progress, chunks, expand_inputs, study_names
from olvf.runtime.detection import Detections
from olvf.runtime.overlay import CLASS_COLOURS, UNKNOWN_COLOUR, Mark, encode_png, render_heatmap, render_overlay
from olvf.runtime.radiograph import MIN_SIDE, Radiograph, read_radiograph
from olvf.runtime.report import (
    DEMO_WARNING,
    RegionGeometry,
    ReportContext,
    analyse_cams,
    build_report,
    decision_line,
    finish_report,
    operating_point,
    overlay_label,
    study_regions,
    summary_lines,
)
from olvf.runtime.runners import backend_names
from olvf.runtime.session import Runtime, StudyAnalysis, StudyResult

PROG = "olvf-infer"
CHUNK = 16  # studies per detector + ensemble call: bounds memory (full-size images stay in RAM) and latency
CROP_MIN_SIDE = 16  # whole-image crops are small; a radiograph must be at least MIN_SIDE
CROP_LEVEL = "crop"
CROP_RULE = "no detector in the bundle: the whole image is one vertebral-body crop"
OVERLAY = "overlay.png"
REPORT = "report.json"


@dataclass(frozen=True)
class Job:
    order: int
    path: Path
    name: str


@dataclass(frozen=True)
class Outcome:
    order: int
    label: str
    folder: Path | None = None
    report: dict[str, Any] | None = None
    error: OlvfError | None = None


@dataclass(frozen=True)
class Loaded:
    job: Job
    radiograph: Radiograph
    read_ms: float


@dataclass(frozen=True)
class Analysed:
    studies: list[StudyAnalysis]
    detect_ms: float | None
    classify_ms: float
    shared_by: int  # studies whose detector and ensemble calls were one
    failures: dict[int, OlvfError] = field(default_factory=dict)  # index in the chunk -> error


def _device(text: str) -> str:
    if text.isdigit() or text in ("cpu", "cuda", "tensorrt"):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use cpu, cuda, tensorrt or a GPU index (0, 1, ...)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Find the lumbar vertebrae of lateral radiographs and classify each as normal / old / fresh "
        "fracture, with Grad-CAM; writes report.json, overlay.png and heatmaps per input.",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="radiograph files (DICOM, PNG, JPEG, TIFF), folders (searched recursively) or globs",
    )
    parser.add_argument("--bundle", type=Path, default=Path("engines"), help="bundle folder (default engines/)")
    parser.add_argument(
        "--backend",
        default="auto",
        help="auto (default: TensorRT, else ONNX Runtime on the GPU, else on CPU) or one of "
        + ", ".join(backend_names()),
    )
    parser.add_argument(
        "--device",
        type=_device,
        default=None,
        help="cpu, cuda or tensorrt: ONNX Runtime with that provider (cpu under auto: CPU only); "
        "N: the GPU index for TensorRT and auto",
    )
    parser.add_argument(
        "--precision", choices=("fp32", "fp16"), default=None, help="graph to run (default fp32 on CPU, fp16 on GPU)"
    )
    engines = parser.add_argument_group("TensorRT engines (built on this machine, kept in the bundle)")
    engines.add_argument(
        "--rebuild-engines", action="store_true", help="build and verify this machine's engines now, then run"
    )
    engines.add_argument(
        "--build-engines-if-needed",
        action="store_true",
        help="build them only when this machine has no current engines (the Jetson container's first start)",
    )
    engines.add_argument(
        "--engine-max-batch", type=int, default=None, help="largest crop batch of the engines (default the bundle's)"
    )
    parser.add_argument("--out", type=Path, default=Path("olvf-out"), help="output folder (default olvf-out/)")
    parser.add_argument("--force", action="store_true", help="replace existing study folders under --out")
    parser.add_argument("--json", action="store_true", help="print the reports as a JSON list on stdout, nothing else")
    parser.add_argument(
        "--anterior",
        choices=("left", "right"),
        default=None,
        help="side of the image the patient faces, for the anterior/posterior Grad-CAM bands (default left)",
    )
    return parser


def _geometry(anterior: str | None) -> RegionGeometry:
    if anterior is None:
        return RegionGeometry()
    return RegionGeometry(anterior=anterior, anterior_source=f"--anterior {anterior}")


def _load(args: argparse.Namespace) -> Runtime:
    import olvf

    options: dict[str, Any] = {}
    if args.device is not None:
        options["device"] = int(args.device) if args.device.isdigit() else args.device
    rt = olvf.load(args.bundle, backend=args.backend, precision=args.precision, **options)
    if rt.runner is None:
        rt.close()
        raise BundleError(
            f"bundle {args.bundle} has no classifiers; export them into it with "
            "olvf-export --resnet50 R.pt --densenet161 D.pt --resnext50 X.pt"
        )
    return rt


def make_context(rt: Runtime, bundle_arg: Path, geometry: RegionGeometry) -> ReportContext:
    manifest = rt.manifest
    assert rt.runner is not None  # checked by _load
    detector = None
    if rt.detector is not None:
        detector = {
            "name": rt.detector_backend,
            "device": rt.detector.device,
            # A TensorRT engine's own precision (a TensorRT 10 engine is FP16 built from the FP32 graph).
            "precision": rt.detector.precision or manifest.graph_for("detector", rt.precision).precision,
        }
    return ReportContext(
        bundle={"path": str(bundle_arg), "manifest_sha256": rt.bundle.manifest_sha256, "demo": manifest.demo},
        backend={
            "name": rt.backend,
            "device": rt.runner.device,
            "precision": rt.precision,
            "detector": detector,
            "requested": rt.selection.requested,
            "why": rt.selection.why,
        },
        classes=rt.classes,
        operating_point=operating_point(manifest),
        geometry=geometry,
        demo=manifest.demo,
        cascade=rt.detector is not None,
    )


# --- analysis -------------------------------------------------------------------


def _split(rt: Runtime, found: list[Detections], batch: np.ndarray) -> list[StudyAnalysis]:
    everything = rt.classify(batch)
    studies, start = [], 0
    for dets in found:
        studies.append(StudyAnalysis(dets, everything[start : start + len(dets)]))
        start += len(dets)
    return studies


def analyse_cascade(rt: Runtime, images: Sequence[np.ndarray]) -> tuple[list[StudyAnalysis], float, float]:
    """``Runtime.analyse`` on [0, 1] images, with its detect and classify times."""
    # The detector and the crops work on the 0..255 scale the models were trained on.
    studies = rt.analyse([image * np.float32(255.0) for image in images])
    stages = rt.stage_ms
    return studies, stages["detect"], stages["crops"] + stages["ensemble"] + stages["gradcam"]


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


def analyse_crops(rt: Runtime, images: Sequence[np.ndarray]) -> tuple[list[StudyAnalysis], None, float]:
    assert rt.preprocess is not None
    start = perf_counter()
    batch = rt.preprocess([image * np.float32(255.0) for image in images])
    studies = _split(rt, [whole_image(image) for image in images], batch)
    return studies, None, (perf_counter() - start) * 1e3


def analyse(rt: Runtime, images: list[np.ndarray], cascade: bool) -> Analysed:
    """All images at once; if that fails, one by one, so that one bad image does not sink the others."""
    run = analyse_cascade if cascade else analyse_crops
    try:
        studies, detect_ms, classify_ms = run(rt, images)
        return Analysed(studies, detect_ms, classify_ms, len(images))
    except OlvfError:
        if len(images) == 1:
            raise
    results: list[StudyAnalysis] = []
    failures: dict[int, OlvfError] = {}
    detect_total, classify_total = 0.0, 0.0
    for i, image in enumerate(images):
        try:
            (study,), detect_ms, classify_ms = run(rt, [image])
        except OlvfError as exc:
            failures[i] = exc
            continue
        results.append(study)
        detect_total += detect_ms or 0.0
        classify_total += classify_ms
    return Analysed(results, detect_total if cascade else None, classify_total, 1, failures)


# --- writing --------------------------------------------------------------------


def _marks(report: dict[str, Any], cams: np.ndarray) -> list[Mark]:
    marks = []
    for v, cam in zip(report["vertebrae"], cams):
        prediction = v["prediction"]
        marks.append(
            Mark(
                box=tuple(v["box"]),
                region=tuple(v["gradcam"]["crop_region"]),
                cam=cam,
                label=overlay_label(v["level"], prediction, v["probabilities"][prediction]),
                colour=CLASS_COLOURS.get(prediction, UNKNOWN_COLOUR),
            )
        )
    return marks


def write_study(
    loaded: Loaded,
    study: StudyResult,
    context: ReportContext,
    rt: Runtime,
    folder: Path,
    *,
    force: bool,
    shared: tuple[float | None, float, int],
) -> dict[str, Any]:
    """Analyse the maps, draw, and write the study folder atomically; returns its report."""
    start = perf_counter()
    regions = study_regions(study, rt.manifest.crops, context.cascade)
    cams = analyse_cams(study.classification.cam, study.detections.boxes, regions, context.geometry)
    report = build_report(study, cams, context)
    pixels = loaded.radiograph.pixels
    marks = _marks(report, study.classification.cam)
    overlay, layout = render_overlay(
        pixels, marks, decision=decision_line(report), demo_warning=DEMO_WARNING if context.demo else None
    )
    images = {OVERLAY: encode_png(overlay)}
    for mark, v in zip(marks, report["vertebrae"]):
        g = v["gradcam"]
        caption = f"Grad-CAM of '{g['target']}', peak in the {g['peak_region'].replace('_', ' ')}"
        images[g["image"]] = encode_png(render_heatmap(pixels, mark, caption))
    try:
        with staged_directory(folder, force=force) as staging:
            for name, data in images.items():
                (staging / name).write_bytes(data)
            detect_ms, classify_ms, shared_by = shared
            timings = {"read": loaded.read_ms, "detect": detect_ms, "classify": classify_ms}
            timings["report"] = (perf_counter() - start) * 1e3
            timings["total"] = sum(v for v in timings.values() if v is not None)
            report = finish_report(
                report, overlay={"image": OVERLAY, **layout.to_dict()}, timings_ms=timings, shared_by=shared_by
            )
            (staging / REPORT).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OlvfError(f"{folder}: cannot write the results ({exc.strerror or exc}); choose another --out") from None
    return report


# --- the run --------------------------------------------------------------------


def _read(job: Job, out: Path, force: bool, cascade: bool, display: Any) -> Loaded:
    folder = out / job.name
    try:
        check_replaceable(folder, force=force)  # before the slow work
    except OutputExistsError:
        raise OutputExistsError(
            f"{job.path}: its results folder {folder} already exists; pass --force to replace it"
        ) from None
    start = perf_counter()
    radiograph = read_radiograph(job.path, display, min_side=MIN_SIDE if cascade else CROP_MIN_SIDE)
    return Loaded(job, radiograph, (perf_counter() - start) * 1e3)


def process_chunk(
    rt: Runtime, context: ReportContext, jobs: Sequence[Job], args: argparse.Namespace, progress: Progress
) -> list[Outcome]:
    outcomes: list[Outcome] = []

    def fail(job: Job, error: OlvfError) -> None:
        progress.say(f"{PROG}: error: {error}")
        progress.advance()
        outcomes.append(Outcome(job.order, str(job.path), error=error))

    ready: list[Loaded] = []
    for job in jobs:
        try:
            ready.append(_read(job, args.out, args.force, context.cascade, rt.manifest.display))
        except OlvfError as exc:
            fail(job, exc)
    if not ready:
        return outcomes
    analysed = analyse(rt, [loaded.radiograph.pixels for loaded in ready], context.cascade)
    done = max(len(analysed.studies), 1)
    # Each study reports its share of the calls it shared (or, one by one, the mean).
    shared = (
        None if analysed.detect_ms is None else analysed.detect_ms / done,
        analysed.classify_ms / done,
        analysed.shared_by,
    )
    studies = iter(analysed.studies)
    for i, loaded in enumerate(ready):
        job = loaded.job
        if i in analysed.failures:
            fail(job, analysed.failures[i])
            continue
        analysis = next(studies)
        study = StudyResult(loaded.radiograph.info, analysis.detections, analysis.classification)
        folder = args.out / job.name
        try:
            report = write_study(loaded, study, context, rt, folder, force=args.force, shared=shared)
        except OlvfError as exc:
            fail(job, exc)
            continue
        progress.advance()
        outcomes.append(Outcome(job.order, str(job.path), folder=folder, report=report))
    return outcomes


def print_summary(outcomes: Sequence[Outcome], context: ReportContext | None, why: str = "") -> None:
    if context is not None and context.demo:
        print(DEMO_WARNING)
    for outcome in outcomes:
        if outcome.report is not None:
            print("\n".join(summary_lines(outcome.report, outcome.label, str(outcome.folder))))
    if context is not None:
        backend = context.backend
        print(f"backend {backend['name']} on {backend['device']} ({backend['precision']}; {why})")
    ok = sum(o.report is not None for o in outcomes)
    print(f"{len(outcomes)} {'study' if len(outcomes) == 1 else 'studies'}: {ok} ok, {len(outcomes) - ok} failed")


def prepare_engines(args: argparse.Namespace) -> None:
    """Build this machine's TensorRT engines into the bundle: always, or (if-needed) when it has none current.

    If-needed (the container's every start) is best effort when there is work to do and ``--backend
    auto`` may choose: a build that cannot run or is refused is one line, and ONNX Runtime runs instead.
    """
    from olvf.runtime.engines import build_bundle_engines, describe
    from olvf.runtime.runners.tensorrt import device_facts, same_machine

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    device = int(args.device) if args.device is not None and args.device.isdigit() else 0
    try:
        manifest = build_bundle_engines(
            args.bundle,
            progress=say,
            max_batch=args.engine_max_batch,
            device=device,
            only_missing=not args.rebuild_engines,
        )
    except (BackendError, ParityError, BundleError) as exc:
        best_effort = not args.rebuild_engines and args.inputs and args.backend == "auto"
        if not best_effort:
            raise
        say(f"{PROG}: no TensorRT engines ({exc}); continuing with --backend auto")
        return
    if manifest is None:
        return  # this machine's engines are there and current
    here = device_facts(device)
    say(f"{PROG}: engines verified against ONNX Runtime on CPU and added to {args.bundle}:")
    for spec in manifest.engines:
        if same_machine(spec, here):
            say(f"   {describe(spec)}")


def run(args: argparse.Namespace) -> int:
    if not args.inputs and not (args.rebuild_engines or args.build_engines_if_needed):
        raise InputError("no INPUT given: name radiograph files, folders or globs (see olvf-infer --help)")
    if args.engine_max_batch is not None and args.engine_max_batch < 1:
        raise OlvfError("--engine-max-batch must be at least 1")
    if args.engine_max_batch is not None and not (args.rebuild_engines or args.build_engines_if_needed):
        raise OlvfError("--engine-max-batch applies to engine builds: add --rebuild-engines")
    if args.rebuild_engines or args.build_engines_if_needed:
        prepare_engines(args)
        if not args.inputs:
            return 0
    geometry = _geometry(args.anterior)
    items = expand_inputs(args.inputs, exclude=[args.out])
    progress = Progress(len(items))
    outcomes: list[Outcome] = []
    paths = [item for item in items if isinstance(item, Path)]
    names = iter(study_names(paths))
    jobs: list[Job] = []
    for order, item in enumerate(items):
        if isinstance(item, InputError):
            progress.say(f"{PROG}: error: {item}")
            progress.advance()
            outcomes.append(Outcome(order, str(item), error=item))
        else:
            jobs.append(Job(order, item, next(names)))
    context, why = None, ""
    try:
        if jobs:
            with _load(args) as rt:
                context, why = make_context(rt, args.bundle, geometry), rt.selection.brief
                for chunk in chunks(jobs, CHUNK):
                    outcomes += process_chunk(rt, context, chunk, args, progress)
    finally:
        progress.close()
    outcomes.sort(key=lambda o: o.order)
    if args.json:
        print(json.dumps([o.report for o in outcomes if o.report is not None], indent=2, allow_nan=False))
    else:
        print_summary(outcomes, context, why)
    first_failure = next((o.error for o in outcomes if o.error is not None), None)
    return 0 if first_failure is None else first_failure.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
