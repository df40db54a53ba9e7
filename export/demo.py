"""Demo weights: the real architectures with seeded random weights, labelled as a demo everywhere.

Nothing trained can be shipped or downloaded, yet a new installation, CI and
the end-to-end tests need a bundle. Random initialisation alone leaves
BatchNorm statistics at their defaults, so activations grow without bound
through fifty layers and every probability saturates at 0 or 1. The
statistics are therefore calibrated on seeded synthetic crops, which keeps
activations in the range trained networks have; the decisions still mean
nothing, and every report of a demo bundle says so.

Residual branches also start scaled down (``RESIDUAL_GAIN``), as torchvision's
``zero_init_residual`` does but not to zero. A random fifty-layer ResNet at
full gain is chaotic: it amplifies FP16 rounding until class maps differ by
about 20 % between FP16 and FP32, which trained networks do not do. At gain
0.2 the demo is as well-conditioned as a trained network and can pass the
same FP16 parity gate.

The demo *detector*, by contrast, is trained and does find the phantoms'
vertebrae and name their levels: a YOLOv5u-nano made from phantoms by
``export/dev/train_demo_detector.py`` (in the repository, not installed), committed as ``demo_detector.pt`` (a
plain FP16 ``state_dict``, no pickled code) with ``demo_detector.md``
recording how. It goes through the same ultralytics export and parity gate
as a user's checkpoint.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from olvf.errors import BackendError, CheckpointError
from olvf.export.architectures import STUDY_ENSEMBLE, Architecture
from olvf.export.synthetic import synthetic_crops
from olvf.runtime.bundle import sha256_file
from olvf.runtime.config import DEFAULT_CONF, DEFAULT_IOU

if TYPE_CHECKING:
    from olvf.export.pipeline import DetectorSource  # pipeline imports this module (through parity)

RESIDUAL_GAIN = 0.2


def calibrate_batchnorm(model: nn.Module, crops: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to those of ``crops``; returns the model in eval mode."""
    saved = {}
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            saved[module] = module.momentum
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(crops)
    for module, momentum in saved.items():
        module.momentum = momentum
    return model.eval()


def demo_model(arch: Architecture, seed: int, input_size: tuple[int, int] = (224, 224)) -> nn.Module:
    """One demo classifier: reproducible from ``seed`` alone."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    model = arch.build(3)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(".bn3"):  # the last BatchNorm of every ResNet/ResNeXt bottleneck
                module.weight.mul_(RESIDUAL_GAIN)
    return calibrate_batchnorm(model, synthetic_crops(8, input_size, seed))


def demo_members(
    seed: int = 0, input_size: tuple[int, int] = (224, 224), architectures: tuple[Architecture, ...] = STUDY_ENSEMBLE
) -> list[tuple[Architecture, nn.Module, int]]:
    """The study's three architectures with demo weights, each with the seed that made it."""
    return [(arch, demo_model(arch, seed + i, input_size), seed + i) for i, arch in enumerate(architectures)]


# --------------------------------------------------------------------------- the demo detector

DEMO_DETECTOR = Path(__file__).with_name("demo_detector.pt")
DEMO_DETECTOR_NAME = "export/demo_detector.pt"  # as the manifest and the record name it
PARITY_PHANTOM_SEED = 0


@dataclass(frozen=True)
class DemoDetector:
    """The committed demo detector, rebuilt: an ultralytics ``DetectionModel`` (float32, eval) and its facts."""

    model: nn.Module
    names: tuple[str, ...]
    imgsz: int
    sha256: str


def require_ultralytics() -> None:
    """Fail early, with the fix, where the demo detector cannot be built."""
    if importlib.util.find_spec("ultralytics") is None:
        raise BackendError(
            "--demo builds its vertebra detector with ultralytics, which is not installed: "
            "pip install 'olvf[export]' (or give a detector ONNX file with --detector)"
        )


def load_demo_detector(path: Path = DEMO_DETECTOR) -> DemoDetector:
    """Rebuild the demo detector from its yaml and the committed FP16 ``state_dict`` (read with weights_only)."""
    from olvf.export.detector import _offline_ultralytics

    if not path.is_file():
        raise CheckpointError(
            f"the demo detector weights {path} are missing from this installation; reinstall olvf, or remake "
            "them with: python export/dev/train_demo_detector.py --out export/demo_detector.pt"
        )
    require_ultralytics()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    names = tuple(saved["names"])
    with _offline_ultralytics(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ultralytics' own deprecations while building the model
        from ultralytics.nn.tasks import DetectionModel

        model = DetectionModel(saved["yaml"], nc=len(names), verbose=False)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in saved["state_dict"].items()})
    model.names = dict(enumerate(names))
    return DemoDetector(model.float().eval(), names, int(saved["imgsz"]), sha256_file(path))


def demo_detector_source(
    folder: Path, *, conf: float = DEFAULT_CONF, iou: float = DEFAULT_IOU, weights: Path = DEMO_DETECTOR
) -> DetectorSource:
    """The demo detector as an export source: an ultralytics checkpoint written into ``folder``.

    The exporter takes ultralytics checkpoints, which are pickled models; this
    one is pickled here, from the model just rebuilt from plain tensors, so
    trusting it trusts nothing outside olvf. Its parity image is a phantom
    radiograph, converted as the runtime converts the DICOM.
    """
    from olvf.export.pipeline import DetectorSource
    from olvf.phantom import make_phantom, phantom_display

    detector = load_demo_detector(weights)
    checkpoint = folder / "demo_detector_ultralytics.pt"
    torch.save({"model": detector.model.half(), "train_args": {"imgsz": detector.imgsz}}, checkpoint)
    detector.model.float()
    return DetectorSource(
        path=checkpoint,
        imgsz=detector.imgsz,
        conf=conf,
        iou=iou,
        trust_pickle=True,
        radiograph=phantom_display(make_phantom(PARITY_PHANTOM_SEED)),
        origin={
            "demo": DEMO_DETECTOR_NAME,
            "sha256": detector.sha256,
            "format": "state_dict (FP16, weights_only) rebuilt on ultralytics' yolov5nu.yaml",
            "record": "export/demo_detector.md",
            "note": "trained on phantom radiographs only, not for diagnosis",
        },
    )
