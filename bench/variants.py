"""The ways of doing one study that the benchmark compares, each timed stage by stage.

Every variant reads the same phantom DICOM with the same reader and writes the
same report, overlay and heatmaps with the same writer, so the differences are
in how the detector, the classifiers and Grad-CAM run:

- ``naive``: what research code does: PyTorch eager, the detector on the
  image, then each crop through each model one at a time for the prediction,
  then pytorch-grad-cam's Grad-CAM per crop and model (a forward with
  gradients and a full backward, hooked at ``layer4[-1]`` and DenseNet's
  ``features[-1]``, the layers its users pass);
- ``torch-batched``: PyTorch eager, all crops in one batch, CAM from the
  exposed features (olvf's reference backend);
- ``olvf-<backend>-<precision>``: the lean runtime as ``olvf-infer`` runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import olvf
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.inputs.images import Radiograph
from olvf.runtime.inputs.reader import read_radiograph
from olvf.runtime.steps.detection import Detections, letterbox, postprocess
from olvf.runtime.steps.gradcam import fuse_maps
from olvf.runtime.study.pipeline import StudyPipeline
from olvf.runtime.study.results import Classification, StageTimes, StudyResult
from olvf.runtime.study.runtime import Runtime
from olvf.runtime.writers.report import ReportContext, report_context
from olvf.runtime.writers.study_folder import write_study

STAGES = ("read", "detect", "crops", "ensemble", "gradcam", "applicability", "write")


@dataclass
class Variant:
    """A name and a function that runs one study into a folder and returns its stage times (ms)."""

    name: str
    study: Callable[[Path, Path], dict[str, float]]
    close: Callable[[], None]
    notes: str = ""


def _write(study: StudyResult, context: ReportContext, out: Path) -> float:
    start = time.perf_counter()
    write_study(study, context, out, force=True)
    return (time.perf_counter() - start) * 1e3


def _stages(study: StudyResult, context: ReportContext, out: Path) -> dict[str, float]:
    stages = {k: v or 0.0 for k, v in study.timings.to_dict().items()}
    stages["write"] = _write(study, context, out)
    return stages


def _made_elsewhere(
    pipeline: StudyPipeline,
    path: Path,
    radiograph: Radiograph,
    detections: Detections,
    classification: Classification,
    ms: list[float],
) -> StudyResult:
    """A study whose detections and classification a PyTorch variant made itself, with its stage times."""
    read, detect, crops, ensemble, gradcam = ms
    timings = StageTimes(read=read, detect=detect, crops=crops, ensemble=ensemble, gradcam=gradcam)
    return pipeline.finish(str(path), radiograph, detections, classification, timings)


def _only(pipeline: StudyPipeline, path: Path) -> StudyResult:
    (outcome,) = pipeline.run_batch([path])
    if not isinstance(outcome, StudyResult):
        raise outcome.error
    return outcome


def olvf_variant(bundle: Path, backend: str, precision: str | None, **options: Any) -> Variant:
    rt = olvf.load(bundle, backend=backend, precision=precision, **options)
    pipeline = StudyPipeline(rt)
    context = report_context(rt, str(bundle))

    def study(path: Path, out: Path) -> dict[str, float]:
        return _stages(_only(pipeline, path), context, out)

    name = f"olvf-{backend}-{rt.precision}" + (f"-{options['device']}" if options.get("device") else "")
    return Variant(name, study, rt.close)


def torch_detector(bundle: Path) -> Callable[[np.ndarray, Runtime], Detections] | None:
    """The demo detector in PyTorch eager (the bundle's ONNX otherwise has no PyTorch source here)."""
    import torch

    from olvf.export.demo import load_demo_detector

    source = open_bundle(bundle, verify=False).manifest.detector
    if source is None or "demo" not in source.source:
        return None
    network = load_demo_detector().model.eval()

    def detect(image: np.ndarray, rt: Runtime) -> Detections:
        spec = rt.manifest.detector
        assert spec is not None
        tensor, info = letterbox(image, spec.input_size)
        with torch.no_grad():
            raw = network(torch.from_numpy(tensor[None]))
        raw = raw[0] if isinstance(raw, (tuple, list)) else raw
        return postprocess(raw[0].numpy(), info, spec)

    return detect


def _members(rt: Runtime) -> list[tuple[Any, Any]]:
    from olvf.export import architectures
    from olvf.export.demo import rebuild_demo_model

    members = []
    for spec in rt.manifest.models:
        if "demo_seed" not in spec.source:
            raise olvf.BackendError("the torch variants need a demo bundle (its models are rebuilt from seeds)")
        arch = architectures.get(spec.architecture)
        members.append((arch, rebuild_demo_model(arch, spec.source, spec.preprocessing.input_size)))
    return members


def pytorch_grad_cam(model: Any, layer: Any, x: Any, target: int) -> np.ndarray:
    """Grad-CAM as pytorch-grad-cam 1.5 computes it (its wheel needs the GUI opencv-python, so it is
    re-implemented here step for step): hooks on the target layer, a forward with gradients on, a full
    ``backward`` from the target logit (parameters' gradients included, ``retain_graph=True``), channel
    weights = mean gradient, ReLU of the weighted sum, min-max normalised, resized with cv2 bilinear."""
    import cv2

    saved: dict[str, Any] = {}

    def forward_hook(_module: Any, _inputs: Any, output: Any) -> None:
        saved["activation"] = output.detach()
        output.register_hook(lambda grad: saved.__setitem__("gradient", grad.detach()))

    handle = layer.register_forward_hook(forward_hook)
    try:
        output = model(x)
        model.zero_grad()
        output[0, target].backward(retain_graph=True)
    finally:
        handle.remove()
    weights = saved["gradient"].mean(dim=(2, 3), keepdim=True)
    cam = np.maximum((weights * saved["activation"]).sum(dim=1)[0].numpy(), 0)
    cam = cam - cam.min()
    cam = cam / (1e-7 + cam.max())
    return cv2.resize(cam, (x.shape[3], x.shape[2]))


def _cam_layer(model: Any) -> Any:
    """The layer research code hooks: ``layer4[-1]``, and DenseNet's last features (``norm5``)."""
    return model.layer4[-1] if hasattr(model, "layer4") else model.features[-1]


def naive_variant(bundle: Path) -> Variant:
    """Research code: per crop, per model, autograd Grad-CAM; every step in PyTorch eager."""
    import torch

    from olvf.runtime.steps.crops import extract_crops

    # The reader, crop rule, preprocessing and writer are shared; this runtime's runners are not used.
    rt = olvf.load(bundle, backend="onnxruntime")
    pipeline = StudyPipeline(rt)
    context = report_context(rt, str(bundle))
    members = _members(rt)
    detect_torch = torch_detector(bundle)
    preprocess = rt.preprocess
    assert preprocess is not None

    def study(path: Path, out: Path) -> dict[str, float]:
        t = [time.perf_counter()]
        radiograph = read_radiograph(path, rt.manifest.display)
        image = radiograph.pixels
        t.append(time.perf_counter())
        dets = detect_torch(image, rt) if detect_torch else rt.detect(image)
        t.append(time.perf_counter())
        crops = [preprocess([c])[0] for c in extract_crops(image, dets.boxes, rt.manifest.crops)]
        t.append(time.perf_counter())
        per_model: dict[str, list[np.ndarray]] = {arch.name: [] for arch, _ in members}
        cams: dict[str, list[np.ndarray]] = {arch.name: [] for arch, _ in members}
        targets = []
        for crop in crops:
            x = torch.from_numpy(crop[None])
            with torch.no_grad():
                for arch, model in members:
                    per_model[arch.name].append(torch.softmax(model(x), 1)[0].numpy())
            targets.append(int(np.mean([p[-1] for p in per_model.values()], axis=0).argmax()))
        t.append(time.perf_counter())
        for crop, target in zip(crops, targets):
            x = torch.from_numpy(crop[None])
            for arch, model in members:
                cams[arch.name].append(pytorch_grad_cam(model, _cam_layer(model), x, target))
        t.append(time.perf_counter())
        model_probs = {k: np.array(v, np.float32).reshape(-1, 3) for k, v in per_model.items()}
        size = preprocess.spec.input_size
        model_cams = {k: np.array(v, np.float32).reshape(-1, *size) for k, v in cams.items()}
        probabilities = np.mean(list(model_probs.values()), axis=0).astype(np.float32)
        cls = Classification(
            classes=rt.classes,
            probabilities=probabilities,
            model_probabilities=model_probs,
            cams=model_cams,
            cam=fuse_maps(list(model_cams.values())),
            target=probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64),
        )
        ms = [(b - a) * 1e3 for a, b in zip(t, t[1:])]
        return _stages(_made_elsewhere(pipeline, path, radiograph, dets, cls, ms), context, out)

    note = "detector in PyTorch eager" if detect_torch else "detector on ONNX Runtime (no PyTorch source)"
    return Variant("naive", study, rt.close, notes=note)


def torch_batched_variant(bundle: Path) -> Variant:
    """olvf's way (all crops in one batch, CAM from the exposed features) with PyTorch eager as the backend."""
    from olvf.runtime.steps.crops import extract_crops

    rt = olvf.load(bundle, backend="torch")
    pipeline = StudyPipeline(rt)
    context = report_context(rt, str(bundle))
    detect_torch = torch_detector(bundle)
    preprocess = rt.preprocess
    assert preprocess is not None

    def study(path: Path, out: Path) -> dict[str, float]:
        if detect_torch is None:
            return _stages(_only(pipeline, path), context, out)
        t = [time.perf_counter()]
        radiograph = read_radiograph(path, rt.manifest.display)
        t.append(time.perf_counter())
        dets = detect_torch(radiograph.pixels, rt)
        t.append(time.perf_counter())
        batch = preprocess(extract_crops(radiograph.pixels, dets.boxes, rt.manifest.crops))
        t.append(time.perf_counter())
        outputs = rt.run_ensemble(batch)
        t.append(time.perf_counter())
        cls = rt.explain(outputs)
        t.append(time.perf_counter())
        ms = [(b - a) * 1e3 for a, b in zip(t, t[1:])]
        return _stages(_made_elsewhere(pipeline, path, radiograph, dets, cls, ms), context, out)

    note = "detector in PyTorch eager" if detect_torch else "detector on ONNX Runtime (no PyTorch source)"
    return Variant("torch-batched", study, rt.close, notes=note)
