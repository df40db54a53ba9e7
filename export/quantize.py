"""INT8 graphs by post-training quantisation, calibrated on vertebra crops cut as the runtime cuts them.

NNCF quantises the bundle's FP32 ensemble as an OpenVINO model and the result
is kept as OpenVINO IR (``ensemble_int8.<id>.xml`` / ``.bin``). Measured on
this project's 2-core CPU (AVX-512 VNNI), fused ensemble at 6 crops, against
ONNX Runtime FP32 in the same process: NNCF INT8 on OpenVINO 0.31x the time,
ONNX Runtime's static QDQ U8S8 0.67x (and its S8S8 no faster than FP32 on
CPUs without AVX-VNNI-INT8), with no better Grad-CAM agreement; so NNCF.

What stays in FP32: each model's head (the linear layer), the softmax, the
ensemble mean and the 1x1 convolutions that make the class maps, so that
Grad-CAM's maps are taken from FP32 weights rather than 8-bit ones (INT8
class maps wrecked single-model maps in an earlier probe). Excluding the
whole last stage as well was measured: no better maps, 30 % slower, 2.4x the
weights. Activation ranges are the calibration set's min/max (NNCF's default,
the mean of per-sample ranges, moved the probabilities five times more).

Calibration crops come from the user's radiographs (a folder, or a labelled
set's CSV), run through the bundle's own detector and crop rule and the
manifest's preprocessing; for the demo, from phantom radiographs. The set's
size and hashes go into the manifest, never a file name (names of clinical
files can identify patients).

The INT8 graph is not trusted by being made: ``auto`` runs it only after a
check on a labelled set records it as verified (:mod:`olvf.runtime.runners.verified_routes`).
Needs OpenVINO and NNCF (``pip install 'olvf[quantize]'``), not torch.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from olvf.digest import sha256_file
from olvf.errors import BackendError, BundleError, InputError, OlvfError
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.bundle.manifest import GraphSpec, Manifest
from olvf.runtime.bundle.updates import check_writable, update_manifest
from olvf.runtime.steps.crops import extract_crops

Progress = Callable[[str], None]

#: phantom radiographs the demo is calibrated on (validation seeds start elsewhere:
#: see olvf.runtime.runners.verified_routes)
PHANTOM_SEEDS = range(1000, 1016)
#: fewer crops than this give ranges that a few unusual vertebrae decide
MIN_CROPS = 16
#: NNCF's own default number of calibration samples; more only costs time
MAX_CROPS = 300
CSV_PATH_COLUMNS = ("path", "file", "image")


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed crops (N, 3, H, W) float32 and what the manifest records about them."""

    crops: np.ndarray
    record: dict[str, Any]


def _digest(arrays: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for item in arrays:
        digest.update(item)
    return digest.hexdigest()


def _crops_from_images(rt: Any, images: Sequence[np.ndarray]) -> np.ndarray:
    """Each image's vertebrae found by the bundle's detector, cut and preprocessed as the pipeline does."""
    from olvf.runtime.study.pipeline import whole_image

    batches = []
    for image in images:
        detections = rt.detect(image) if rt.detector is not None else whole_image(image)
        if len(detections):
            batches.append(rt.preprocess(extract_crops(image, detections.boxes, rt.manifest.crops)))
    if not batches:
        return np.zeros((0, *rt.preprocess.input_shape), np.float32)
    return np.concatenate(batches)


def _finish(crops: np.ndarray, record: dict[str, Any], progress: Progress) -> CalibrationSet:
    if len(crops) < MIN_CROPS:
        raise InputError(
            f"calibration found {len(crops)} vertebra crops, at least {MIN_CROPS} are needed; "
            "give more radiographs (a few dozen lateral lumbar films is plenty)"
        )
    if len(crops) > MAX_CROPS:
        progress(f"      using {MAX_CROPS} of {len(crops)} crops, evenly spread")
        crops = crops[np.linspace(0, len(crops) - 1, MAX_CROPS).round().astype(int)]
    crops = np.ascontiguousarray(crops, dtype=np.float32)
    record = {**record, "crops": len(crops), "crops_sha256": _digest([crops.tobytes()])}
    return CalibrationSet(crops, record)


def phantom_calibration(rt: Any, seeds: Sequence[int] = PHANTOM_SEEDS, progress: Progress = print) -> CalibrationSet:
    """The demo's calibration: full-size phantom radiographs through the bundle's detector."""
    from olvf.phantom import make_phantom, phantom_display

    progress(f"      drawing {len(seeds)} phantom radiographs (seeds {seeds[0]}..{seeds[-1]}) for calibration")
    images = [phantom_display(make_phantom(seed)) for seed in seeds]
    record = {"source": "phantoms", "seeds": [int(s) for s in seeds], "images": len(images)}
    return _finish(_crops_from_images(rt, images), record, progress)


def radiograph_paths(source: Path, flag: str = "--calibration") -> list[Path]:
    """The radiographs a calibration (or ``flag``) argument names: a folder (searched like olvf-infer's inputs)
    or a CSV."""
    from olvf.runtime.inputs.discovery import folder_files

    if source.is_dir():
        files = folder_files(source)
        if not files:
            raise InputError(f"{flag} {source}: the folder holds no DICOM, PNG, JPEG or TIFF file")
        return files
    if source.is_file() and source.suffix.lower() == ".csv":
        with open(source, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
        columns = {name.strip().lower(): name for name in (rows[0].keys() if rows else [])}
        column = next((columns[c] for c in CSV_PATH_COLUMNS if c in columns), None)
        if column is None:
            raise InputError(
                f"{flag} {source}: the CSV needs a column named {', '.join(CSV_PATH_COLUMNS)} "
                "(the radiograph of each row, relative to the CSV's folder)"
            )
        # A labelled set has a row per vertebra: each radiograph once, or its crops would weigh six times.
        named = (row[column].strip() for row in rows if (row[column] or "").strip())
        return [source.parent / name for name in dict.fromkeys(named)]
    raise InputError(f"{flag} {source}: give a folder of radiographs or a labelled set's .csv")


def radiograph_calibration(rt: Any, source: Path, progress: Progress = print) -> CalibrationSet:
    """Calibration crops from the user's radiographs (read as olvf-infer reads them)."""
    from olvf.runtime.inputs.reader import read_radiograph

    paths = radiograph_paths(source)
    progress(f"      reading {len(paths)} radiographs for calibration")
    images, file_hashes, skipped = [], [], 0
    for path in paths:
        try:
            images.append(read_radiograph(path, rt.manifest.display).pixels)
        except InputError as exc:
            skipped += 1
            progress(f"      skipped: {exc}")
            continue
        file_hashes.append(sha256_file(path))
    record = {
        "source": "labelled set" if source.suffix.lower() == ".csv" else "radiograph folder",
        "images": len(images),
        "images_skipped": skipped,
        # The set is identified by its contents, not its file names.
        "images_sha256": _digest([h.encode() for h in sorted(file_hashes)]),
    }
    return _finish(_crops_from_images(rt, images), record, progress)


def import_nncf() -> tuple[Any, Any]:
    from olvf.runtime.runners.openvino import import_openvino

    # NNCF imports torch where it is installed, whose extension loader warns that no CUDA runtime is found:
    # true on a CPU machine and nothing the person quantising can act on.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        ov = import_openvino()
        import nncf
    except ImportError as exc:
        raise BackendError(
            f"INT8 graphs need OpenVINO and NNCF ({exc.name or exc} is missing): pip install 'olvf[quantize]'"
        ) from None
    return ov, nncf


def fp32_kept(model: Any, class_maps: Sequence[str]) -> list[str]:
    """Operations NNCF must leave in FP32, so that no 8-bit value reaches the heads or Grad-CAM directly.

    The heads' matrix products, the global average pools (ReduceMean: left to NNCF, the last feature maps would
    enter the pool as 8-bit values), the softmaxes, everything after them (the ensemble's stack and mean) and the
    class-map convolutions.
    """
    names = set(class_maps)
    kept = {
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() in ("MatMul", "ReduceMean", "Softmax")
        or (op.get_type_name() == "Convolution" and op.get_friendly_name() in names)
    }
    front = [op for op in model.get_ordered_ops() if op.get_type_name() == "Softmax"]
    while front:
        for output in front.pop().outputs():
            for target in output.get_target_inputs():
                node = target.get_node()
                if node.get_type_name() != "Result" and node.get_friendly_name() not in kept:
                    kept.add(node.get_friendly_name())
                    front.append(node)
    return sorted(kept)


def quantize_graph(
    source: Path, out_xml: Path, calibration: CalibrationSet, class_maps: Sequence[str], progress: Progress = print
) -> dict[str, Any]:
    """NNCF post-training INT8 of an FP32 ONNX graph into OpenVINO IR; returns the manifest's record of it."""
    ov, nncf = import_nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    nncf.set_log_level(logging.WARNING)  # its per-node INFO lines are not for the person exporting
    model = ov.Core().read_model(str(source))
    missing = set(class_maps) - {o.get_any_name() for o in model.outputs}
    if missing:
        raise BundleError(f"{source.name} lacks the class-map outputs {sorted(missing)}; re-export the bundle")
    kept = fp32_kept(model, class_maps)
    crops = calibration.crops
    dataset = nncf.Dataset([crops[i : i + 1] for i in range(len(crops))])
    progress(
        f"      NNCF INT8 on {len(crops)} crops, {len(kept)} operations kept in FP32 (heads, class maps); "
        "about 2 minutes on 2 cores"
    )
    quantized = nncf.quantize(
        model,
        dataset,
        subset_size=len(crops),
        ignored_scope=nncf.IgnoredScope(names=kept),
        advanced_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
        ),
    )
    # compress_to_fp16=False: OpenVINO would otherwise store the FP32 parts' weights as FP16.
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return {
        "method": "NNCF post-training quantisation (OpenVINO IR)",
        "source_graph": source.name,
        "activations": "int8, ranges: min/max over the calibration set",
        "weights": "int8, per output channel",
        "kept_fp32": "each model's head (MatMul), softmax, ensemble mean, class-map convolutions",
        "kept_fp32_operations": len(kept),
        "calibration": calibration.record,
        "versions": {p: _version(p) for p in ("nncf", "openvino")},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def calibration_for(rt: Any, source: Path | None, demo: bool, progress: Progress) -> CalibrationSet:
    if source is not None:
        return radiograph_calibration(rt, source, progress)
    if not demo:
        raise OlvfError(
            "INT8 needs calibration radiographs like the ones it will see: --calibration FOLDER or a labelled "
            "set's CSV (phantoms calibrate only the demo bundle)"
        )
    return phantom_calibration(rt, progress=progress)


def add_int8_graph(bundle_dir: str | Path, calibration: Path | None = None, *, progress: Progress = print) -> Manifest:
    """Quantise the bundle's FP32 ensemble to INT8 and add it to the bundle; return the new manifest.

    ``calibration``: a folder of radiographs or a labelled set's CSV; None
    only for a demo bundle (phantoms). An INT8 graph already there is
    replaced, and the routes verified on it are dropped.
    """
    import olvf

    folder = Path(bundle_dir)
    bundle = open_bundle(folder)
    manifest = bundle.manifest
    import_nncf()  # before minutes of work, not after
    check_writable(folder, "an INT8 graph")
    if not manifest.has("ensemble"):
        raise BundleError(f"bundle {folder} has no classifiers to quantise")
    source = manifest.graph("ensemble", "fp32")
    with olvf.load(folder, backend="onnxruntime", precision="fp32", device="cpu") as rt:
        crops = calibration_for(rt, calibration, manifest.demo, progress)
    # New names: the bundle stays valid as it is until its manifest is replaced, which takes the lock briefly.
    xml = folder / f"ensemble_int8.{secrets.token_hex(3)}.xml"
    written = [xml, xml.with_suffix(".bin")]
    retired: set[str] = set()
    try:
        record = quantize_graph(
            bundle.file(source.file), xml, crops, [m.class_maps_output for m in manifest.models], progress
        )
        hashes = {path.name: sha256_file(path) for path in written}

        def add(current: Manifest) -> Manifest:
            if current.files.get(source.file) != manifest.files[source.file]:
                raise BundleError(f"{source.file} changed while it was quantised; quantise it again")
            retired.update(f for g in current.graphs if g.precision == "int8" for f in g.members)
            return _with_int8(current, source, xml, record, hashes)

        new = update_manifest(folder, add, "an INT8 graph")
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    for name in retired:
        (folder / name).unlink(missing_ok=True)
    progress(f"      INT8 graph {xml.name} added ({record['calibration']['crops']} calibration crops)")
    return new


def _with_int8(
    manifest: Manifest, source: GraphSpec, xml: Path, record: dict[str, Any], hashes: dict[str, str]
) -> Manifest:
    graph = GraphSpec(
        role="ensemble",
        file=xml.name,
        precision="int8",
        opset=source.opset,
        input_name=source.input_name,
        input_shape=source.input_shape,
        output_names=source.output_names,
        max_batch=source.max_batch,
        format="openvino-ir",
        weights=xml.with_suffix(".bin").name,
        quantization=record,
    )
    retired = {f for g in manifest.graphs if g.precision == "int8" for f in g.members}
    files = {k: v for k, v in manifest.files.items() if k not in retired}
    files.update(hashes)
    graphs = tuple(g for g in manifest.graphs if g.precision != "int8") + (graph,)
    routes = tuple(r for r in manifest.verified_routes if not set(r.graphs) & retired)
    return dataclasses.replace(manifest, graphs=graphs, files=files, verified_routes=routes)
