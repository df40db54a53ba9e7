"""``olvf-infer``: radiographs in, a report a clinician can read out.

    olvf-infer [--bundle engines] [--out olvf-out] [--json] [--force] INPUT...
    olvf-infer --rebuild-engines [--bundle engines] [INPUT...]

INPUT: files, folders or globs (:mod:`olvf.runtime.batch`). The inputs go
through the study pipeline (:mod:`olvf.runtime.pipeline`) in batches of
``--batch``: one detector call and one ensemble call per batch; a bad input
costs only itself. Each study gets a folder under ``--out`` holding
``report.json``, ``overlay.png`` and one ``<level>_gradcam.png`` per vertebra
(:mod:`olvf.runtime.writers.study_folder`), built in a staging folder and
renamed into place, so no half-written study remains. An existing study
folder is replaced only with ``--force``. This module parses and prints;
the work is the library's.

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olvf.cli_main import run_main
from olvf.errors import BackendError, BundleError, InputError, OlvfError, OutputExistsError, ParityError, UsageError
from olvf.runtime.atomic import check_replaceable
from olvf.runtime.batch import Progress, expand_inputs, study_names
from olvf.runtime.cam_regions import RegionGeometry
from olvf.runtime.pipeline import DEFAULT_BATCH, StudyPipeline
from olvf.runtime.results import InputFailure, StudyResult
from olvf.runtime.runners import backend_names
from olvf.runtime.session import Runtime
from olvf.runtime.writers.report import DEMO_WARNING, ReportContext, report_context, summary_lines
from olvf.runtime.writers.study_folder import write_study

if TYPE_CHECKING:
    from olvf.runtime.writers.dicom_source import DicomSource

PROG = "olvf-infer"


@dataclass(frozen=True)
class Outcome:
    order: int
    label: str
    folder: Path | None = None
    study: StudyResult | None = None
    report: dict[str, Any] | None = None
    error: OlvfError | None = None


def _device(text: str) -> str:
    if text.isdigit() or text in ("cpu", "cuda", "tensorrt"):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use cpu, cuda, tensorrt or a GPU index (0, 1, ...)")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


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
        help="auto (default: TensorRT, else ONNX Runtime on the GPU, else a CPU route the bundle verified, else "
        "ONNX Runtime on CPU) or one of " + ", ".join(backend_names()),
    )
    parser.add_argument(
        "--device",
        type=_device,
        default=None,
        help="cpu, cuda or tensorrt: ONNX Runtime with that provider (cpu under auto: CPU only); "
        "N: the GPU index for TensorRT and auto",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "fp16", "bf16", "int8"),
        default=None,
        help="graph to run (default fp32 on CPU, fp16 on GPU); bf16 and int8 with --backend openvino",
    )
    parser.add_argument(
        "--batch",
        type=_positive,
        default=DEFAULT_BATCH,
        help=f"studies per detector and ensemble call (default {DEFAULT_BATCH}); bounds memory and latency",
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
        "--dicom",
        action="store_true",
        help="also write, for each DICOM input, a Secondary Capture of the overlay (olvf_sc.dcm) and a TID 1500 "
        "Structured Report (olvf_sr.dcm) in the patient's study, for the PACS",
    )
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
    return olvf.load(args.bundle, backend=args.backend, precision=args.precision, **options)


def _refuse_existing(path: Path, folder: Path, force: bool) -> None:
    """Before the slow work: an input whose results folder exists (without --force) is not analysed."""
    try:
        check_replaceable(folder, force=force)
    except OutputExistsError:
        raise OutputExistsError(
            f"{path}: its results folder {folder} already exists; pass --force to replace it"
        ) from None


def dicom_source(path: Path, progress: Progress) -> DicomSource | None:
    """The input's DICOM header for the DICOM results; None (said once per run) for images without one."""
    from olvf.runtime.writers.dicom_source import NO_PATIENT_CONTEXT, NoPatientContextError, read_dicom_source

    try:
        return read_dicom_source(path)
    except NoPatientContextError:
        progress.say_once(f"{PROG}: note: {NO_PATIENT_CONTEXT}")
        return None


def print_summary(outcomes: Sequence[Outcome], context: ReportContext | None, why: str = "") -> None:
    if context is not None and context.demo:
        print(DEMO_WARNING)
    for outcome in outcomes:
        if outcome.study is not None:
            print("\n".join(summary_lines(outcome.study, outcome.label, str(outcome.folder))))
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
    from olvf.runtime.bundle_engines import build_bundle_engines, describe
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
        raise UsageError("--engine-max-batch must be at least 1")
    if args.engine_max_batch is not None and not (args.rebuild_engines or args.build_engines_if_needed):
        raise UsageError("--engine-max-batch applies to engine builds: add --rebuild-engines")
    if args.rebuild_engines or args.build_engines_if_needed:
        prepare_engines(args)
        if not args.inputs:
            return 0
    items = expand_inputs(args.inputs, exclude=[args.out])
    progress = Progress(len(items))
    outcomes: list[Outcome] = []

    def failed(order: int, label: str, error: OlvfError) -> None:
        progress.say(f"{PROG}: error: {error}")
        progress.advance()
        outcomes.append(Outcome(order, label, error=error))

    paths = [item for item in items if isinstance(item, Path)]
    names = iter(study_names(paths))
    jobs: dict[str, tuple[int, Path]] = {}  # the pipeline's source label -> (order, results folder)
    for order, item in enumerate(items):
        if isinstance(item, InputError):
            failed(order, str(item), item)
            continue
        folder = args.out / next(names)
        try:
            _refuse_existing(item, folder, args.force)
        except OutputExistsError as exc:
            failed(order, str(item), exc)
            continue
        jobs[str(item)] = (order, folder)
    context, why = None, ""
    try:
        if jobs:
            with _load(args) as rt:
                pipeline = StudyPipeline(rt, batch=args.batch, geometry=_geometry(args.anterior))
                context, why = report_context(rt, str(args.bundle)), rt.selection.brief
                for outcome in pipeline.run([Path(source) for source in jobs]):
                    order, folder = jobs[outcome.source]
                    if isinstance(outcome, InputFailure):
                        failed(order, outcome.source, outcome.error)
                        continue
                    try:
                        dicom = dicom_source(Path(outcome.source), progress) if args.dicom else None
                        report = write_study(outcome, context, folder, force=args.force, dicom=dicom)
                    except OlvfError as exc:
                        failed(order, outcome.source, exc)
                        continue
                    progress.advance()
                    outcomes.append(Outcome(order, outcome.source, folder=folder, study=outcome, report=report))
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
