"""``olvf-export``: checkpoints -> a verified model bundle."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from olvf.atomic import check_replaceable
from olvf.cli_main import run_main
from olvf.errors import BackendError, OlvfError, ParityError, UsageError
from olvf.runtime.bundle.config import (
    DEFAULT_CONF,
    DEFAULT_CROP_MARGIN,
    DEFAULT_IOU,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    Preprocessing,
)
from olvf.runtime.bundle.manifest import DEFAULT_BUNDLE


def _floats3(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="olvf-export",
        description="Export the ResNet-50 / DenseNet-161 / ResNeXt-50 ensemble to one fused ONNX graph "
        "with Grad-CAM outputs, check it against PyTorch, and write a model bundle.",
    )
    sources = parser.add_argument_group("checkpoints (torchvision architectures with a 3-class head)")
    sources.add_argument("--resnet50", type=Path, metavar="R.pt")
    sources.add_argument("--densenet161", type=Path, metavar="D.pt")
    sources.add_argument("--resnext50", type=Path, metavar="X.pt", help="resnext50_32x4d")
    sources.add_argument(
        "--demo",
        action="store_true",
        help="no input files: classifiers and a detector trained on phantoms only (export/demo_classifiers.md, "
        "export/demo_detector.md; unless --detector), labelled DEMO everywhere, not for diagnosis",
    )
    sources.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow checkpoints that are whole pickled models (runs code from the file)",
    )
    detector = parser.add_argument_group(
        "detector (a .pt of the original YOLOv5 repository, read without running it; a .pt of the ultralytics "
        "package, which needs --trust-pickle; or any YOLOv5 .onnx)"
    )
    detector.add_argument("--detector", type=Path, metavar="best.pt|model.onnx")
    detector.add_argument("--detector-imgsz", type=int, help="input size, when the file does not record it")
    detector.add_argument("--detector-stride", type=int, help="largest stride, when the file does not record it")
    detector.add_argument(
        "--detector-names",
        type=lambda t: tuple(n.strip() for n in t.split(",")),
        metavar="A,B,...",
        help="class names in index order, when the file does not record them",
    )
    detector.add_argument(
        "--conf", type=float, default=DEFAULT_CONF, help=f"detection confidence threshold (default {DEFAULT_CONF})"
    )
    detector.add_argument("--iou", type=float, default=DEFAULT_IOU, help=f"NMS IoU threshold (default {DEFAULT_IOU})")
    detector.add_argument(
        "--crop-margin",
        type=float,
        default=DEFAULT_CROP_MARGIN,
        help=f"crop margin around each box, as a fraction (default {DEFAULT_CROP_MARGIN})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"bundle folder (with --demo default {DEFAULT_BUNDLE}; a checkpoint export names one, e.g. engines/site)",
    )
    target = parser.add_argument_group("TensorRT (on the machine that will run the bundle)")
    target.add_argument(
        "--engine",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="build TensorRT FP16 engines for this machine's GPU into the bundle and verify them against "
        "ONNX Runtime on CPU before it is written (default: when TensorRT and a GPU are present); implies "
        "--precision fp16",
    )
    target.add_argument(
        "--verify",
        type=Path,
        metavar="DIR",
        help="no export: check bundle DIR's hashes and every backend this machine has (FP16 graphs, ONNX Runtime "
        "CUDA, TensorRT engines) against ONNX Runtime on CPU",
    )
    signing = parser.add_argument_group("signing (Ed25519; see olvf.runtime.bundle.signing)")
    signing.add_argument(
        "--sign",
        type=Path,
        metavar="KEY",
        help="sign the bundle with this Ed25519 private key (PEM; openssl genpkey -algorithm ed25519), so that "
        "devices with OLVF_TRUSTED_KEYS run it",
    )
    signing.add_argument(
        "--resign",
        type=Path,
        metavar="DIR",
        help="no export: check bundle DIR's files and sign its manifest as it is now with --sign KEY (after "
        "olvf-validate --write-operating-point, or to sign a bundle exported unsigned)",
    )
    target.add_argument(
        "--triton",
        type=Path,
        metavar="DIR",
        help="no export: write bundle DIR as a Triton Inference Server model repository into --out (the detector "
        "and the ensemble, dynamic batching with ER and routine priorities, the bundle's identity in each config)",
    )
    target.add_argument(
        "--labels",
        type=Path,
        metavar="SET",
        help="with --verify: then gate every route that passed on a labelled set (labels.csv or its folder), as "
        "olvf-validate does: decision agreement and the study's figures against ONNX Runtime FP32",
    )
    target.add_argument(
        "--intended-use",
        nargs=2,
        type=Path,
        metavar=("DIR", "FILE"),
        help="no export: set bundle DIR's intended use (the images it gives verdicts on) from FILE, a JSON object "
        "of the keys to change (modalities, sop_classes, body_parts, views, image_type_values, description, "
        "anatomy {...}); the others keep the study's defaults",
    )
    cpu = parser.add_argument_group("CPU reduced precision (pip install 'olvf[quantize]': OpenVINO and NNCF)")
    cpu.add_argument(
        "--int8",
        action="store_true",
        help="also make an INT8 graph of the ensemble (NNCF post-training quantisation), calibrated on "
        "--calibration (phantoms for --demo); auto runs it only once a check on a labelled set verified it",
    )
    cpu.add_argument(
        "--calibration",
        type=Path,
        metavar="FOLDER|SET.csv",
        help="radiographs to calibrate INT8 on: a folder, or a labelled set's CSV with a 'path' column; "
        "the bundle's detector finds the vertebrae, crops are cut as olvf-infer cuts them",
    )
    cpu.add_argument(
        "--quantize",
        type=Path,
        metavar="DIR",
        help="no export: add an INT8 graph to bundle DIR (calibrated on --calibration; phantoms for a demo bundle)",
    )
    cpu.add_argument(
        "--check-routes",
        type=Path,
        metavar="DIR",
        help="no export: run each reduced-precision CPU route this machine has (OpenVINO BF16, INT8) against "
        "ONNX Runtime FP32 on phantom studies and print the figures; a demo bundle records the ones that pass "
        "as verified (real bundles are verified on labelled radiographs with olvf-validate)",
    )
    cpu.add_argument("--studies", type=int, default=100, help="phantom studies for --check-routes (default 100)")
    domain = parser.add_argument_group("the bundle's own domain (olvf.runtime.bundle.domain)")
    domain.add_argument(
        "--domain",
        type=Path,
        metavar="FOLDER|SET.csv",
        help="in-domain radiographs (a folder, or a labelled set's CSV with a 'path' column; at least 30 studies) "
        "to fit the domain check on: studies whose vertebrae look unlike these to the bundle's networks are called "
        "outside its domain (--demo fits on phantoms without it)",
    )
    domain.add_argument(
        "--fit-domain",
        type=Path,
        metavar="DIR",
        help="no export: fit the domain of bundle DIR on --domain (phantoms for a demo bundle), replacing any there",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    parser.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        default=None,
        help="fp16 adds an FP16 graph (for GPUs and TensorRT) beside the FP32 one (default fp32, or fp16 when "
        "engines are built)",
    )
    parser.add_argument("--max-batch", type=int, default=32, help="largest crop batch per call (default 32)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    preprocessing = parser.add_argument_group("preprocessing the checkpoints were trained with")
    preprocessing.add_argument("--input-size", type=int, default=224, help="square crop size (default 224)")
    preprocessing.add_argument("--mean", type=_floats3, default=IMAGENET_MEAN, metavar="R,G,B")
    preprocessing.add_argument("--std", type=_floats3, default=IMAGENET_STD, metavar="R,G,B")
    preprocessing.add_argument("--interpolation", choices=INTERPOLATIONS, default="bilinear")
    parser.add_argument(
        "--fresh-threshold",
        type=float,
        default=None,
        help="fresh-fracture probability at or above which MRI is recommended (default 0.5; with --demo, the "
        "operating point chosen for the demo heads on validation phantoms)",
    )
    return parser


def verify(bundle_dir: Path, labels: Path | None = None) -> int:
    """``--verify DIR``: runs without torch, on the target."""
    from olvf.runtime.bundle.files import open_bundle
    from olvf.runtime.checks.verify import verify_bundle

    bundle = open_bundle(bundle_dir)
    bundle.verify_all()
    print(f"bundle {bundle_dir}: sha256 of {len(bundle.manifest.files)} files verified")
    print("reference: ONNX Runtime on CPU with the FP32 graphs (phantom crops, noise crops, detector boxes)")
    checks = verify_bundle(bundle, progress=lambda line: print(line, file=sys.stderr, flush=True))
    for check in checks:
        print(f"  {check.line()}")
    failed = [c.label for c in checks if c.status == "fail"]
    if failed:
        raise ParityError(f"{', '.join(failed)} did not reproduce the bundle within the FP16 tolerances")
    ran = sum(c.status == "pass" for c in checks)
    print(f"{ran} backend(s) checked, all within tolerance" if ran else "no backend here besides the reference")
    if labels is not None:
        clinical_gate(bundle_dir, labels, [c for c in checks if c.status == "pass"])
    return 0


def clinical_gate(bundle_dir: Path, labels: Path, passed: list[Any]) -> None:
    """The routes that reproduced the numbers must also keep the decisions, on the user's labelled set."""
    from olvf.runtime.validation.labels import read_labels
    from olvf.runtime.validation.routes import Route, validate_routes

    reference = Route("onnxruntime-fp32", "onnxruntime", "fp32", {"device": "cpu"})
    routes = [reference] + [Route(c.label, c.route.backend, c.route.precision, c.route.options) for c in passed]
    if len(routes) == 1:
        print("clinical gate: no route besides the reference to compare")
        return
    validation = validate_routes(
        bundle_dir, read_labels(labels), routes, progress=lambda line: print(line, file=sys.stderr, flush=True)
    )
    comparison = validation.comparison
    assert comparison is not None  # two routes or more
    if not comparison.passed:
        raise ParityError("clinical parity gate failed: " + "; ".join(comparison.reasons), comparison.to_dict())
    print(
        f"clinical gate passed on {len(validation.labelled.studies)} labelled studies: "
        f"{', '.join(r.label for r in routes[1:])} keep the decisions of ONNX Runtime FP32"
    )


def quantize(bundle_dir: Path, calibration: Path | None) -> int:
    """``--quantize DIR``: no torch needed."""
    from olvf.export.quantize import add_int8_graph

    print(f"adding an INT8 graph to {bundle_dir}", file=sys.stderr, flush=True)
    manifest = add_int8_graph(bundle_dir, calibration, progress=lambda line: print(line, file=sys.stderr, flush=True))
    graph = manifest.graph("ensemble", "int8")
    print(f"{bundle_dir}: INT8 graph {graph.file} added; calibration {graph.quantization['calibration']}")
    print("auto runs it once verified: olvf-validate on a labelled set (demo: olvf-export --check-routes DIR)")
    return 0


def fit_domain(bundle_dir: Path, radiographs: Path | None) -> int:
    """``--fit-domain DIR``: no torch needed."""
    from olvf.export.domain import add_domain

    print(f"fitting the domain of {bundle_dir}", file=sys.stderr, flush=True)
    manifest = add_domain(bundle_dir, radiographs, progress=lambda line: print(line, file=sys.stderr, flush=True))
    assert manifest.domain is not None
    held_out = manifest.domain.held_out
    print(
        f"{bundle_dir}: domain {manifest.domain.file} added: threshold {manifest.domain.threshold:.3g}, "
        f"{held_out['rejected']} of {held_out['studies']} held-out in-domain studies beyond it"
    )
    from olvf.runtime.bundle.signing import SIGNATURE_NAME

    if (Path(bundle_dir) / SIGNATURE_NAME).is_file():  # a changed manifest voids the signature
        print(
            f"the manifest changed since it was signed: sign it again with olvf-export --resign {bundle_dir} --sign KEY"
        )
    return 0


def check_routes(bundle_dir: Path, studies: int) -> int:
    """``--check-routes DIR``: each reduced-precision route this machine can run, against ONNX Runtime FP32."""
    from olvf.runtime.bundle.files import open_bundle
    from olvf.runtime.checks.routes import check_set_size, verify_demo_route
    from olvf.runtime.runners.verified_routes import REDUCED

    if studies < 1:
        raise UsageError("--studies must be at least 1")
    check_set_size(studies)  # before minutes of work, and before a route is judged on no evidence
    manifest = open_bundle(bundle_dir).manifest
    failed, checked = [], 0
    for name in REDUCED:
        precision = name.rsplit("-", 1)[1]
        if precision == "int8" and not any(g.precision == "int8" for g in manifest.graphs):
            print(f"  {name}: skipped: the bundle has no INT8 graph (olvf-export --quantize {bundle_dir})")
            continue
        print(f"checking {name} against ONNX Runtime FP32 on {studies} phantom studies", file=sys.stderr, flush=True)
        try:
            result, recorded = verify_demo_route(
                bundle_dir, name, studies=studies, progress=lambda line: print(line, file=sys.stderr, flush=True)
            )
        except BackendError as exc:  # OpenVINO missing, no native BF16 here: not a disagreement, but said
            print(f"  {name}: skipped: {exc}")
            continue
        checked += 1
        print(f"  {result.line()}")
        if recorded is not None:
            print(f"  {name}: recorded in {bundle_dir}/manifest.json as verified on this kind of CPU")
        elif result.passed:
            print(f"  {name}: not recorded: verify a real bundle on labelled radiographs with olvf-validate")
        else:
            failed.append(name)
    if failed:
        raise ParityError(f"{', '.join(failed)} changed the bundle's answers beyond the limits; auto will not run it")
    print(f"{checked} route(s) checked" if checked else "no reduced-precision route runs on this machine")
    return 0


def engine_wanted(flag: bool | None) -> bool:
    """--engine: yes; --no-engine: no; neither: when TensorRT and a GPU are here."""
    from olvf.runtime.runners.tensorrt import tensorrt_unavailable

    if flag is False:
        return False
    reason = tensorrt_unavailable()
    if flag and reason:
        raise BackendError(f"--engine: {reason}")
    return reason is None


def set_intended_use(bundle_dir: Path, path: Path) -> int:
    """``--intended-use DIR FILE``: the bundle's intended use from a JSON file, written under the bundle's lock."""
    import dataclasses
    import json

    import olvf.json_text as json_text
    from olvf.runtime.bundle.config import IntendedUse
    from olvf.runtime.bundle.signing import SIGNATURE_NAME
    from olvf.runtime.bundle.updates import update_manifest

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--intended-use {path}: cannot read it ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--intended-use {path}: not JSON ({exc})") from None
    try:
        use = IntendedUse.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--intended-use {path}: {exc}") from None
    update_manifest(bundle_dir, lambda m: dataclasses.replace(m, intended_use=use), "the intended use")
    print(f"bundle {bundle_dir}: intended use set: {use.description}")
    print(json_text.dumps(use.to_dict(), indent=2))
    if (Path(bundle_dir) / SIGNATURE_NAME).exists():
        print(f"the manifest changed: sign it again with olvf-export --resign {bundle_dir} --sign KEY")
    return 0


def resign(bundle_dir: Path, key: Any) -> int:
    """``--resign DIR --sign KEY``: every file checked, then the manifest as it is signed."""
    from olvf.runtime.bundle.files import open_bundle
    from olvf.runtime.bundle.signing import write_signature
    from olvf.runtime.bundle.updates import bundle_lock, check_writable

    bundle = open_bundle(bundle_dir, trusted=[])
    with bundle_lock(bundle_dir, doing="signing"):
        bundle = open_bundle(bundle_dir, trusted=[])
        bundle.verify_all()
        check_writable(bundle_dir, "the signature")
        identity = write_signature(bundle_dir, key)
    print(f"bundle {bundle_dir}: {len(bundle.manifest.files)} files verified, manifest signed by key {identity}")
    return 0


def run(args: argparse.Namespace) -> int:
    key = None
    if args.sign is not None:
        from olvf.runtime.bundle.signing import load_private_key

        key = load_private_key(args.sign)  # before minutes of export
    if args.domain is not None and any(
        v is not None for v in (args.resign, args.verify, args.quantize, args.check_routes)
    ):
        raise UsageError("--domain goes with an export or with --fit-domain DIR")
    if args.intended_use is not None:
        return set_intended_use(*args.intended_use)
    if args.resign is not None:
        if key is None:
            raise UsageError("--resign DIR needs --sign KEY (the private key to sign with)")
        return resign(args.resign, key)
    if args.labels is not None and args.verify is None:
        raise UsageError("--labels goes with --verify DIR")
    if args.verify is not None:
        return verify(args.verify, args.labels)
    if args.fit_domain is not None:
        return fit_domain(args.fit_domain, args.domain)
    if args.quantize is not None:
        return quantize(args.quantize, args.calibration)
    if args.check_routes is not None:
        return check_routes(args.check_routes, args.studies)
    if args.triton is not None:
        if args.out is None:
            raise UsageError("--triton DIR needs --out REPO: the folder the model repository goes to")
        from olvf.export.triton_repository import repository_summary, write_triton_repository

        print(repository_summary(write_triton_repository(args.triton, args.out, force=args.force)))
        return 0
    if args.calibration is not None and not args.int8:
        raise UsageError("--calibration calibrates INT8: give it with --int8 or --quantize DIR")
    if args.out is None:
        if not args.demo:
            raise UsageError(
                f"--out DIR is required: the folder the bundle goes to, e.g. --out engines/site "
                f"({DEFAULT_BUNDLE} is where the demo bundle goes)"
            )
        args.out = DEFAULT_BUNDLE
    # Heavy imports only once arguments are known to be sane.
    from olvf.export import architectures
    from olvf.export.checkpoints import load_classifier
    from olvf.export.demo import (
        check_demo_preprocessing,
        demo_detector_source,
        demo_members,
        load_demo_classifiers,
        require_ultralytics,
    )
    from olvf.export.pipeline import DetectorSource, ExportOptions, Member, export_bundle

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    given = {arch: getattr(args, arch.flag) for arch in architectures.STUDY_ENSEMBLE}
    if args.max_batch < 1:
        raise UsageError("--max-batch must be at least 1")
    for flag, value in (("--fresh-threshold", args.fresh_threshold), ("--conf", args.conf), ("--iou", args.iou)):
        if value is not None and not 0.0 < value < 1.0:
            raise UsageError(f"{flag} must lie between 0 and 1")
    if not 0.0 <= args.crop_margin <= 1.0:
        raise UsageError("--crop-margin must lie between 0 and 1")
    size = (args.input_size, args.input_size)
    try:
        preprocessing = Preprocessing(input_size=size, mean=args.mean, std=args.std, interpolation=args.interpolation)
    except ValueError as exc:
        raise UsageError(f"--input-size/--mean/--std: {exc}") from None
    check_replaceable(args.out, force=args.force)
    if args.int8:  # before minutes of export, not after
        from olvf.export.quantize import import_nncf

        import_nncf()
        if args.calibration is None and not args.demo:
            raise OlvfError(
                "--int8 needs --calibration FOLDER|SET.csv: radiographs like the ones it will see "
                "(phantoms calibrate only the demo)"
            )
    # Unasked, engines follow the hardware, but never against an explicit --precision fp32.
    engines = engine_wanted(args.engine if args.engine is not None or args.precision != "fp32" else False)
    if engines and args.engine is None:
        progress("TensorRT and a GPU are here: TensorRT engines will be built and verified too (--no-engine skips)")
    precision = args.precision or ("fp16" if engines else "fp32")
    if engines and precision == "fp32":
        raise OlvfError("--engine builds FP16 engines, which need the FP16 graphs: drop --precision fp32")
    fresh_threshold = 0.5 if args.fresh_threshold is None else args.fresh_threshold
    if args.demo:
        if any(given.values()):
            raise OlvfError("--demo builds its own weights; drop it, or drop the checkpoint flags")
        if args.detector is None:
            require_ultralytics()  # before minutes of work, not after
        classifiers = load_demo_classifiers()
        check_demo_preprocessing(preprocessing, classifiers)
        if args.fresh_threshold is None:
            fresh_threshold = classifiers.fresh_threshold
        progress(
            "building demo classifiers (backbones from their seeds, heads trained on phantoms only, not for "
            f"diagnosis: export/demo_classifiers.md; MRI operating point p(fresh) >= {fresh_threshold:g})"
        )
        members = [Member(arch, model, source) for arch, model, source in demo_members(classifiers)]
    elif not any(given.values()) and args.detector is not None:
        members = []
    else:
        missing = [f"--{arch.flag}" for arch, path in given.items() if path is None]
        if missing:
            raise OlvfError(
                f"missing {', '.join(missing)}: the ensemble needs all three checkpoints "
                "(or --detector alone for a detector-only bundle, or --demo for a demo bundle)"
            )
        members = []
        for arch, path in given.items():
            progress(f"loading {arch.name} from {path}")
            loaded = load_classifier(path, arch, trust_pickle=args.trust_pickle)
            members.append(
                Member(arch, loaded.module, {"file": path.name, "sha256": loaded.sha256, "form": loaded.form})
            )
    if args.domain is not None:  # before minutes of export, not after
        from olvf.export.domain import check_domain_source

        if not members:
            raise OlvfError("--domain measures the classifiers' features: give them (or --demo)")
        check_domain_source(args.domain)
    options = ExportOptions(
        precision=precision,
        max_batch=args.max_batch,
        opset=args.opset,
        preprocessing=preprocessing,
        fresh_threshold=fresh_threshold,
        crop_margin=args.crop_margin,
    )
    detector = None
    if args.detector is not None:
        detector = DetectorSource(
            path=args.detector,
            imgsz=args.detector_imgsz,
            stride=args.detector_stride,
            names=args.detector_names,
            conf=args.conf,
            iou=args.iou,
            trust_pickle=args.trust_pickle,
        )
    with contextlib.ExitStack() as cleanup:
        if args.demo and detector is None:
            progress("building the demo detector (YOLOv5u-nano trained on phantoms: export/demo_detector.md)")
            scratch = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="olvf-demo-detector-")))
            detector = demo_detector_source(scratch, conf=args.conf, iou=args.iou)
        steps: list[Any] = []
        if args.domain is not None or args.demo:
            from olvf.export.domain import add_domain

            def domain_step(staging: Path) -> Any:
                source = "phantoms" if args.domain is None else "the radiographs of --domain"
                progress(f"fitting the bundle's own domain on {source} (ONNX Runtime FP32)")
                return add_domain(staging, args.domain, progress=progress)

            steps.append(domain_step)
        elif members:
            progress(
                "no --domain: the bundle will have no domain check (add one later with olvf-export --fit-domain "
                f"{args.out} --domain RADIOGRAPHS)"
            )
        if args.int8:
            from olvf.export.quantize import add_int8_graph

            if not members:
                raise OlvfError("--int8 quantises the classifiers: give them (or --demo)")
            steps.append(lambda staging: add_int8_graph(staging, args.calibration, progress=progress))
        if engines:
            from olvf.runtime.checks.engines import build_bundle_engines

            steps.append(lambda staging: build_bundle_engines(staging, progress=progress, max_batch=args.max_batch))
        if key is not None:

            def sign(staging: Path) -> Any:
                from olvf.runtime.bundle.manifest import read_manifest
                from olvf.runtime.bundle.signing import write_signature

                progress(f"bundle signed by key {write_signature(staging, key)}")  # last: it signs what is there
                return read_manifest(staging)

            steps.append(sign)
        finish = None
        if steps:

            def finish(staging: Path) -> Any:
                manifest = None
                for step in steps:
                    manifest = step(staging)
                return manifest

        export_bundle(
            args.out,
            members,
            options,
            detector=detector,
            demo=args.demo,
            force=args.force,
            progress=progress,
            finish=finish,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("olvf-export", build_parser(), run, argv, install_hint="exporting needs pip install 'olvf[export]'")


if __name__ == "__main__":
    sys.exit(main())
