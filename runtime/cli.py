"""``olvf-infer``: radiographs in, a report a clinician can read out.

    olvf-infer [--bundle engines] [--out olvf-out] [--json] [--force] INPUT...
    olvf-infer --rebuild-engines [--bundle engines] [INPUT...]

INPUT: files, folders or globs (:mod:`olvf.runtime.inputs.discovery`). The inputs go
through the study pipeline (:mod:`olvf.runtime.study.pipeline`) in batches of
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

Results are printed as they are written, in input order, and nothing of a
study is kept once its folder is written, so memory does not grow with the
number of inputs (the pipeline bounds each batch: ``--batch``,
``--batch-memory``). With ``--json`` stdout is one JSON list with an object
per input: ``{"input", "folder", "report"}`` or ``{"input", "error": {"type",
"exit_code", "message"}}``, so a script sees which inputs failed and why.

Exit code: 0 when every input gave a report; otherwise the code of the first
failed input in argument order (3 an input cannot be used, 8 its output
exists), after the others were still analysed. Argument errors exit 2 and
``--out`` is checked before anything is analysed (8 when it is a file, 1
when it cannot be written). A bundle or backend problem stops everything
(4, 7), as does a refused engine build (6) unless it was
``--build-engines-if-needed`` with inputs under ``--backend auto``, which then
runs on ONNX Runtime. Header text and file names are printed escaped
(:func:`olvf.text.printable`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import olvf.json_text as json_text
from olvf.cli_main import run_main
from olvf.errors import BackendError, BundleError, InputError, OlvfError, OutputExistsError, ParityError, UsageError
from olvf.runtime.bundle.manifest import DEFAULT_BUNDLE
from olvf.runtime.inputs.discovery import Progress, expand_inputs
from olvf.runtime.runners import backend_names
from olvf.runtime.steps.applicability import Gate
from olvf.runtime.steps.regions import RegionGeometry
from olvf.runtime.study.pipeline import (
    CPU_MAX_CROPS,
    DEFAULT_BATCH,
    DEFAULT_BATCH_MEMORY,
    StudyPipeline,
    unexpected_failure,
)
from olvf.runtime.study.results import InputFailure
from olvf.runtime.study.runtime import Runtime
from olvf.runtime.writers.report import DEMO_WARNING, ReportContext, report_context, summary_lines
from olvf.runtime.writers.study_folder import OutputFolder, write_study
from olvf.text import printable

if TYPE_CHECKING:
    from olvf.runtime.writers.dicom_source import DicomSource

PROG = "olvf-infer"


#: every input was read, and at least one was not assessed (a result without a verdict): not an error, but a
#: script that reads only the exit code must not take the run for a set of verdicts
NOT_ASSESSED_EXIT = 9


@dataclass(frozen=True)
class Outcome:
    """One input's end: its report and folder, or its error; ``lines``: its summary for people."""

    order: int
    label: str
    folder: Path | None = None
    report: dict[str, Any] | None = None
    error: OlvfError | None = None
    lines: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            error = {"type": type(self.error).__name__, "exit_code": self.error.exit_code, "message": str(self.error)}
            return {"input": self.label, "error": error}
        return {"input": self.label, "folder": str(self.folder), "report": self.report}


def _device(text: str) -> str:
    if text.isdigit() or text in ("cpu", "cuda", "tensorrt"):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use cpu, cuda, tensorrt or a GPU index (0, 1, ...)")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def _megabytes(text: str) -> int:
    return _positive(text) * 2**20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Find the lumbar vertebrae of lateral radiographs and classify each as normal / old / fresh "
        "fracture, with Grad-CAM; writes report.json, overlay.png and heatmaps per input.",
        epilog="Intended use: the images the bundle's manifest names (by default lateral radiographs of the lumbar "
        "or thoracolumbar spine, CR or DX, original images). A study whose header contradicts it, whose "
        "detected vertebrae are not a lateral lumbar column, or whose crops lie outside the bundle's domain is NOT "
        'ASSESSED: no verdict, the reason on its line, report.json with "assessed": false and '
        '"mri_recommended": null (never false). Exit 0: every study assessed; 9: every input read, at least one '
        "not assessed; 3: an input could not be used (see docs/reference/exit-codes.md).",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="radiograph files (DICOM, PNG, JPEG, TIFF), folders (searched recursively) or globs",
    )
    parser.add_argument(
        "--bundle", type=Path, default=DEFAULT_BUNDLE, help=f"bundle folder (default {DEFAULT_BUNDLE}, the demo's)"
    )
    parser.add_argument(
        "--trusted-keys",
        type=Path,
        action="append",
        metavar="PATH",
        help="run only a bundle signed by one of these Ed25519 public keys (PEM or OpenSSH files, or folders of "
        "them; repeatable); default: those OLVF_TRUSTED_KEYS names, if any",
    )
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
        "--triton-url",
        default=None,
        metavar="HOST:PORT",
        help="with --backend triton: the Triton Inference Server's gRPC address (usually port 8001), serving "
        "the repository olvf-export --triton wrote from this bundle",
    )
    parser.add_argument(
        "--triton-priority",
        choices=("er", "routine"),
        default=None,
        help="with --backend triton: the requests' priority on the server (default er, the higher)",
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
        help=f"studies per detector and ensemble call, at most (default {DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--batch-memory",
        type=_megabytes,
        default=DEFAULT_BATCH_MEMORY,
        metavar="MB",
        help=f"a batch is run once its images hold this many MiB (default {DEFAULT_BATCH_MEMORY // 2**20}); "
        "with --batch it bounds memory whatever the number of inputs",
    )
    parser.add_argument(
        "--max-crops",
        type=_positive,
        default=None,
        metavar="N",
        help=f"vertebra crops per ensemble call (default {CPU_MAX_CROPS} on CPU, the graph's maximum on a GPU); "
        "fewer lowers the backend's memory",
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
    parser.add_argument(
        "--outside-intended-use",
        action="store_true",
        help="RESEARCH ONLY: give verdicts for studies the intended-use checks refuse; every output of such a "
        "study says OUTSIDE INTENDED USE (olvf-serve has no such option)",
    )
    return parser


def _geometry(anterior: str | None) -> RegionGeometry | None:
    """--anterior overrides every file's Patient Orientation; without it each study's own is used."""
    if anterior is None:
        return None
    return RegionGeometry(anterior=anterior, anterior_source=f"--anterior {anterior}")


def triton_options(backend: str, url: str | None, priority: str | None) -> dict[str, Any]:
    """The triton backend's options from the flags; refused where they go with another backend."""
    if backend != "triton":
        if url is not None or priority is not None:
            raise UsageError("--triton-url and --triton-priority go with --backend triton")
        return {}
    if not url:
        raise UsageError("--backend triton needs --triton-url HOST:PORT (the server's gRPC port, usually 8001)")
    return {"triton_url": url, **({"triton_priority": priority} if priority else {})}


def _load(args: argparse.Namespace) -> Runtime:
    import olvf

    options: dict[str, Any] = {}
    if args.device is not None:
        options["device"] = int(args.device) if args.device.isdigit() else args.device
    options.update(triton_options(args.backend, args.triton_url, args.triton_priority))
    return olvf.load(
        args.bundle, backend=args.backend, precision=args.precision, trusted_keys=args.trusted_keys, **options
    )


def dicom_source(path: Path, progress: Progress) -> DicomSource | None:
    """The input's DICOM header for the DICOM results; None (said once per run) for images without one."""
    from olvf.runtime.writers.dicom_source import NO_PATIENT_CONTEXT, NoPatientContextError, read_dicom_source

    try:
        return read_dicom_source(path)
    except NoPatientContextError:
        progress.say_once(f"{PROG}: note: {NO_PATIENT_CONTEXT}")
        return None


class Printer:
    """Outcomes to stdout in input order, as they come: tables for people, or one JSON list for scripts.

    Outcomes known before the analysis (an argument that matched nothing, results
    that exist) wait for their turn; studies arrive in order. Nothing of a study
    but its printed lines is kept.
    """

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stream = stream if stream is not None else sys.stdout
        self.context: ReportContext | None = None
        self.failures: list[OlvfError] = []  # in input order
        self.count = self.ok = self.not_assessed = 0
        self._waiting: dict[int, Outcome] = {}
        self._next = 0
        self._opened = False

    def add(self, outcome: Outcome) -> None:
        self._waiting[outcome.order] = outcome
        while self._next in self._waiting:
            self._emit(self._waiting.pop(self._next))
            self._next += 1

    def _emit(self, outcome: Outcome) -> None:
        self.count += 1
        if outcome.error is not None:
            self.failures.append(outcome.error)
        elif outcome.report is not None and outcome.report.get("assessed") is False:
            self.not_assessed += 1
        else:
            self.ok += 1
        if self.as_json:
            text = json_text.dumps(outcome.to_json(), indent=2)
            self.stream.write(("[\n" if not self._opened else ",\n") + text)
            self._opened = True
        elif outcome.lines:
            if not self._opened and self.context is not None:
                if self.context.demo:
                    print(DEMO_WARNING, file=self.stream)
                print(f"bundle intended for {self.context.intended_use}", file=self.stream)
            self._opened = True
            print("\n".join(outcome.lines), file=self.stream)
        self.stream.flush()

    def close(self, why: str = "", *, finished: bool = True) -> None:
        """The end of the list; ``finished``: the run ended normally, so the summary's last lines follow."""
        for order in sorted(self._waiting):
            self._emit(self._waiting.pop(order))
        if self.as_json:
            if self._opened:
                self.stream.write("\n]\n")
            elif finished:
                self.stream.write("[]\n")
        elif finished:
            if self.context is not None:
                backend = self.context.backend
                print(
                    f"backend {backend['name']} on {backend['device']} ({backend['precision']}; {why})",
                    file=self.stream,
                )
            studies = "study" if self.count == 1 else "studies"
            failed = self.count - self.ok - self.not_assessed
            print(
                f"{self.count} {studies}: {self.ok} assessed, {self.not_assessed} not assessed (no verdict), "
                f"{failed} failed",
                file=self.stream,
            )
        self.stream.flush()


def prepare_engines(args: argparse.Namespace) -> None:
    """Build this machine's TensorRT engines into the bundle: always, or (if-needed) when it has none current.

    If-needed (the container's every start) is best effort when there is work to do and ``--backend
    auto`` may choose: a build that cannot run or is refused is one line, and ONNX Runtime runs instead.
    """
    from olvf.runtime.checks.engines import build_bundle_engines, describe
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
        raise UsageError("no INPUT given: name radiograph files, folders or globs (see olvf-infer --help)")
    if args.engine_max_batch is not None and args.engine_max_batch < 1:
        raise UsageError("--engine-max-batch must be at least 1")
    if args.engine_max_batch is not None and not (args.rebuild_engines or args.build_engines_if_needed):
        raise UsageError("--engine-max-batch applies to engine builds: add --rebuild-engines")
    out = OutputFolder(args.out, force=args.force)
    if args.inputs:
        out.check()  # before minutes of engine building or analysis
    if args.rebuild_engines or args.build_engines_if_needed:
        prepare_engines(args)
        if not args.inputs:
            return 0
    items = expand_inputs(args.inputs, exclude=[args.out])
    progress = Progress(len(items))
    printer = Printer(args.json)

    def failed(order: int, label: str, error: OlvfError) -> None:
        progress.say(f"{PROG}: error: {printable(error)}")
        progress.advance()
        printer.add(Outcome(order, printable(label), error=error))

    jobs: dict[str, int] = {}  # the pipeline's source label -> its order among the inputs
    for order, item in enumerate(items):
        if isinstance(item, InputError):
            failed(order, str(item).split(": ", 1)[0], item)
            continue
        try:
            out.refuse_existing(item)
        except OutputExistsError as exc:
            failed(order, str(item), exc)
            continue
        jobs[str(item)] = order
    why, finished = "", False
    try:
        if jobs:
            with _load(args) as rt:
                pipeline = StudyPipeline(
                    rt,
                    batch=args.batch,
                    batch_memory=args.batch_memory,
                    geometry=_geometry(args.anterior),
                    max_crops=args.max_crops,
                    gate=Gate(rt.manifest.intended_use, override=args.outside_intended_use),
                )
                printer.context, why = report_context(rt, str(args.bundle)), rt.selection.brief
                for outcome in pipeline.run([Path(source) for source in jobs]):
                    order = jobs[outcome.source]
                    if isinstance(outcome, InputFailure):
                        failed(order, outcome.source, outcome.error)
                        continue
                    try:
                        dicom = dicom_source(Path(outcome.source), progress) if args.dicom else None
                        report, folder = write_study(outcome, printer.context, out, dicom=dicom)
                    except OlvfError as exc:
                        failed(order, outcome.source, exc)
                        continue
                    except Exception as exc:  # a header element first read by the writers; this input's alone
                        failed(order, outcome.source, unexpected_failure(outcome.source, exc))
                        continue
                    label = printable(outcome.source)
                    lines = tuple(summary_lines(outcome, label, printable(folder), demo=printer.context.demo))
                    progress.advance()
                    printer.add(Outcome(order, label, folder=folder, report=report, lines=lines))
        finished = True
    finally:
        progress.close()
        printer.close(why, finished=finished)
    first_failure = printer.failures[0] if printer.failures else None
    if first_failure is not None:
        return first_failure.exit_code
    return NOT_ASSESSED_EXIT if printer.not_assessed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
