"""``olvf.load``: a bundle plus a backend, ready to detect vertebrae and classify crops.

:class:`Runtime` holds the started runners and does one model step at a
time (letterbox and detect, classify and explain); the study pipeline
(:mod:`olvf.runtime.study.pipeline`) strings the steps together for whole
radiographs, and :meth:`Runtime.infer` is a shortcut to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from olvf.errors import OlvfError
from olvf.runtime.bundle.files import Bundle, open_bundle
from olvf.runtime.runners import Runner, runner_class
from olvf.runtime.runners.selection import GPU_DEVICES, Selection, auto_candidates, gpu_precision
from olvf.runtime.study.cascade import Cascade
from olvf.runtime.study.pipeline import ImageInput, StudyInput, StudyPipeline
from olvf.runtime.study.results import StudyResult


class Runtime(Cascade):
    """A loaded bundle: the cascade's model steps, and whole studies. Use as a context manager, or call
    :meth:`close`.

    Images are 2-D gray arrays on the display scale [0, 1]
    (:data:`olvf.runtime.bundle.config.DISPLAY_RANGE`), as :func:`read_radiograph` returns them.
    """

    # -- whole studies ---------------------------------------------------
    def infer(self, path: str | Path, *, outside_intended_use: bool = False) -> StudyResult:
        """Read one radiograph (DICOM, PNG, JPEG, TIFF) and run the whole cascade on it.

        A study the bundle was not made for comes back not assessed (``result.assessed`` False, no verdict);
        ``outside_intended_use=True`` (research only) gives the verdict anyway, marked as such.
        """
        return self.infer_many([path], outside_intended_use=outside_intended_use)[0]

    def infer_many(self, paths: Sequence[str | Path], *, outside_intended_use: bool = False) -> list[StudyResult]:
        """Several radiographs through the study pipeline (one detector and one ensemble call per batch).

        Raises the first input's error; use :class:`olvf.runtime.study.pipeline.StudyPipeline` to get every
        input's result or error.
        """
        return self._studies([Path(p) for p in paths], outside_intended_use)

    def analyse(self, images: Sequence[np.ndarray], *, outside_intended_use: bool = False) -> list[StudyResult]:
        """Gray images already in memory (display scale [0, 1]) through the study pipeline."""
        inputs = [ImageInput(f"image {i}", image) for i, image in enumerate(images)]
        return self._studies(inputs, outside_intended_use)

    def _studies(self, inputs: Sequence[StudyInput], outside_intended_use: bool = False) -> list[StudyResult]:
        from olvf.runtime.steps.applicability import Gate

        results = []
        gate = Gate(self.manifest.intended_use, override=outside_intended_use)
        for outcome in StudyPipeline(self, gate=gate).run(inputs):
            if not isinstance(outcome, StudyResult):
                raise outcome.error
            results.append(outcome)
        return results

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def load(
    bundle_dir: str | Path,
    backend: str = "auto",
    *,
    precision: str | None = None,
    verify: bool = True,
    trusted_keys: Sequence[str | Path] | None = None,
    **options: Any,
) -> Runtime:
    """Open ``bundle_dir`` (each graph's hash checked as it loads) and start ``backend`` on its graphs.

    ``trusted_keys``: public key files or folders, one of which must have signed the bundle
    (:mod:`olvf.runtime.bundle.signing`); None: those OLVF_TRUSTED_KEYS names, if any.

    ``backend="auto"`` (the default, as for ``olvf-infer``) tries TensorRT
    engines built on this machine, then ONNX Runtime on the GPU, then the
    fastest reduced-precision CPU route the bundle verified on this kind of CPU
    (OpenVINO INT8 or BF16), then ONNX Runtime on CPU; ``Runtime.selection`` says which runs and why the others
    did not. Under auto, ``device="cuda"`` or ``"tensorrt"`` names an ONNX
    Runtime provider, which is choosing ONNX Runtime with it. ``precision`` picks the FP32 or
    FP16 graph (default: FP32 on CPU, FP16 on a GPU where the bundle has it);
    other keyword options go to the backend (``device=``, ``threads=`` for
    onnxruntime; ``device=`` GPU index for tensorrt; ``checkpoints=`` for torch).
    """
    bundle = open_bundle(bundle_dir, verify=verify, trusted=trusted_keys)
    device = options.get("device")
    if backend == "auto" and device in GPU_DEVICES:
        rt = open_runtime(bundle, "onnxruntime", precision=precision, **options)
        rt.selection = Selection(
            requested="auto",
            chosen=f"ONNX Runtime with its {device} provider",
            rule=f"--device {device}: ONNX Runtime with its {'CUDA' if device == 'cuda' else 'TensorRT'} provider",
        )
        return rt
    if backend != "auto":
        return open_runtime(bundle, backend, precision=precision, **options)

    passed_over: list[tuple[str, str]] = []
    candidates = auto_candidates(bundle.manifest, precision, **options)
    for candidate in candidates:
        if candidate.skip is not None:
            passed_over.append((candidate.label, candidate.skip))
            continue
        try:
            rt = open_runtime(bundle, candidate.backend, precision=candidate.precision, **candidate.options)
        except OlvfError as exc:
            if candidate is candidates[-1]:
                raise
            passed_over.append((candidate.label, str(exc)))
            continue
        rt.selection = Selection(
            requested="auto",
            chosen=candidate.label,
            passed_over=tuple(passed_over),
            verification=candidate.verification,
        )
        return rt
    raise AssertionError("the last auto candidate (ONNX Runtime on CPU) is never skipped")  # pragma: no cover


def open_runtime(bundle: Bundle, backend: str, *, precision: str | None = None, **options: Any) -> Runtime:
    """Start ``backend`` on an opened bundle's ensemble and detector."""
    manifest = bundle.manifest
    if backend == "onnxruntime" and options.get("device") in GPU_DEVICES:
        precision = gpu_precision(manifest, precision)
    cls = runner_class(backend)
    cls.check_precision(precision)
    # A precision the backend computes in without a graph of its own (OpenVINO BF16) runs another graph.
    computed = precision if precision in cls.computed_precisions else None
    graph_precision = cls.computed_precisions[computed] if computed else precision
    chosen = manifest.graph("ensemble" if manifest.has("ensemble") else "detector", graph_precision).precision
    started: list[Runner] = []
    try:
        ensemble = None
        if manifest.has("ensemble"):
            ensemble = cls.from_bundle(bundle, "ensemble", computed or chosen, **options).load()
            started.append(ensemble)
        detector, detector_backend = None, None
        if manifest.has("detector"):
            # The PyTorch reference covers the classifiers; the detector then runs on ONNX Runtime.
            detector_backend = backend if backend != "torch" else "onnxruntime"
            detector_options = options if backend != "torch" else {}
            detector_precision = computed or manifest.graph_for("detector", chosen).precision
            detector = (
                runner_class(detector_backend)
                .from_bundle(bundle, "detector", detector_precision, **detector_options)
                .load()
            )
            started.append(detector)
    except BaseException:
        for runner in started:
            runner.close()
        raise
    # A TensorRT engine's precision is its own, not that of the graph it was built from.
    first = ensemble if ensemble is not None else detector
    return Runtime(bundle, ensemble, backend, (first and first.precision) or chosen, detector, detector_backend)
