"""Demo weights: the real architectures, trained heads on seeded random backbones, labelled DEMO everywhere.

Nothing trained on patients can be shipped or downloaded, yet a new
installation, CI and the end-to-end tests need a bundle whose verdicts mean
something on the phantoms ``olvf-phantom`` draws. Whole trained backbones
(about 100 MB each) cannot be committed, so the demo classifiers are built in
two parts:

1. **Backbones regenerated from their seeds** (``demo_model``): torchvision's
   own random initialisation under ``torch.manual_seed``, which is the same on
   every CPU. Random initialisation alone leaves BatchNorm statistics at their
   defaults, so activations grow without bound through fifty layers and every
   probability saturates; the statistics are therefore calibrated on seeded
   synthetic crops. Residual branches also start scaled down
   (``RESIDUAL_GAIN``), as torchvision's ``zero_init_residual`` does but not to
   zero: a random fifty-layer ResNet at full gain is chaotic and amplifies FP16
   rounding until class maps differ by about 20 % between FP16 and FP32; at
   gain 0.2 the demo passes the same FP16 parity gate as a trained network.
2. **Heads trained on phantom vertebrae** (``demo_classifiers.pt``, a plain
   ``state_dict`` of the three linear heads read with ``weights_only``):
   random deep features are rich enough that a linear head on them separates
   the phantoms' normal, old and fresh bodies (measured in
   ``demo_classifiers.md``, made by ``export/dev/train_demo_classifiers.py``).
   The file also holds the fresh operating point chosen on validation
   phantoms, and each backbone's logits on fixed crops: a backbone rebuilt
   with another torch that initialises differently would silently turn the
   heads into noise, so it is refused instead (float rounding of the
   calibration on another CPU moves them far less than the tolerance).

The demo *detector* is trained too and does find the phantoms' vertebrae and
name their levels: a YOLOv5u-nano made from phantoms by
``export/dev/train_demo_detector.py`` (in the repository, not installed), committed as ``demo_detector.pt`` (a
plain FP16 ``state_dict``, no pickled code) with ``demo_detector.md``
recording how. It goes through the same ultralytics export and parity gate
as a user's checkpoint.

Both were trained on synthetic phantoms only: a demo bundle is not for
diagnosis, and every report of one says so.
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

from olvf.digest import sha256_file
from olvf.errors import BackendError, CheckpointError, UsageError
from olvf.export.architectures import STUDY_ENSEMBLE, Architecture
from olvf.export.synthetic import synthetic_crops
from olvf.runtime.bundle.config import DEFAULT_CONF, DEFAULT_IOU, Preprocessing

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


# --------------------------------------------------------------------------- the demo classifiers

DEMO_CLASSIFIERS = Path(__file__).with_name("demo_classifiers.pt")
DEMO_CLASSIFIERS_NAME = "export/demo_classifiers.pt"  # as the manifest and the record name it
DEMO_CLASSIFIERS_FORMAT = "olvf demo classifiers 1"
DEMO_NOTE = "trained on synthetic phantoms only, not for diagnosis"
# A backbone rebuilt from its seed must reproduce the logits the heads were trained with. Float rounding of
# the BatchNorm calibration on another CPU moves them by about 1e-5; another initialisation moves them by units.
CHECK_ATOL = 0.05
CHECK_CROPS = 4


@dataclass(frozen=True)
class DemoHead:
    """One trained head: the backbone seed it belongs to, its tensors, and the model's logits on check crops."""

    architecture: str
    seed: int
    state_dict: dict[str, torch.Tensor]
    check_logits: torch.Tensor  # (CHECK_CROPS, 3)


@dataclass(frozen=True)
class DemoClassifiers:
    """The committed demo heads (``demo_classifiers.pt``) and what they were trained with."""

    heads: dict[str, DemoHead]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    residual_gain: float
    fresh_threshold: float  # the operating point on the ensemble's p(fresh), chosen on validation phantoms
    check_seed: int
    sha256: str
    path: Path


def load_demo_classifiers(path: Path = DEMO_CLASSIFIERS) -> DemoClassifiers:
    """Read the committed heads with ``weights_only`` (no code runs) and check what they promise."""
    if not path.is_file():
        raise CheckpointError(
            f"the demo classifier heads {path} are missing from this installation; reinstall olvf, or remake "
            "them with: python export/dev/train_demo_classifiers.py train --out export/demo_classifiers.pt"
        )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which, not a traceback
        raise CheckpointError(f"{path} is not a readable demo classifier file ({exc.__class__.__name__})") from None
    if not isinstance(saved, dict) or saved.get("format") != DEMO_CLASSIFIERS_FORMAT:
        raise CheckpointError(f"{path} is not an olvf demo classifier file (format {DEMO_CLASSIFIERS_FORMAT!r})")
    if saved["residual_gain"] != RESIDUAL_GAIN:
        raise CheckpointError(
            f"{path} was trained on backbones with residual gain {saved['residual_gain']}, this olvf builds "
            f"{RESIDUAL_GAIN}; retrain the heads (export/dev/train_demo_classifiers.py)"
        )
    heads = {
        name: DemoHead(name, int(entry["seed"]), dict(entry["state_dict"]), entry["check_logits"])
        for name, entry in saved["models"].items()
    }
    pre = saved["preprocessing"]
    return DemoClassifiers(
        heads=heads,
        input_size=(int(pre["input_size"][0]), int(pre["input_size"][1])),
        mean=tuple(float(v) for v in pre["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in pre["std"]),  # type: ignore[arg-type]
        interpolation=str(pre["interpolation"]),
        residual_gain=float(saved["residual_gain"]),
        fresh_threshold=float(saved["operating_points"]["fresh"]),
        check_seed=int(saved["check_seed"]),
        sha256=sha256_file(path),
        path=path,
    )


def check_crops(classifiers: DemoClassifiers) -> torch.Tensor:
    """The fixed inputs whose logits a rebuilt demo classifier must reproduce."""
    return synthetic_crops(CHECK_CROPS, classifiers.input_size, classifiers.check_seed)


def demo_classifier(arch: Architecture, classifiers: DemoClassifiers) -> nn.Module:
    """The backbone regenerated from its seed with the trained head on top; refused if it is not the same backbone."""
    head = classifiers.heads.get(arch.name)
    if head is None:
        raise CheckpointError(f"{classifiers.path} has no demo head for {arch.name}")
    model = demo_model(arch, head.seed, classifiers.input_size)
    prefix = f"{arch.head}."
    expected = {k for k in model.state_dict() if k.startswith(prefix)}
    if set(head.state_dict) != expected:
        raise CheckpointError(
            f"{classifiers.path}: the {arch.name} head has tensors {sorted(head.state_dict)}, "
            f"expected {sorted(expected)}"
        )
    model.load_state_dict({k: v.float() for k, v in head.state_dict.items()}, strict=False)
    with torch.no_grad():
        logits = model(check_crops(classifiers))
    drift = float((logits - head.check_logits.float()).abs().max())
    if not drift <= CHECK_ATOL:
        raise CheckpointError(
            f"the {arch.name} backbone rebuilt from seed {head.seed} is not the one its demo head was trained on "
            f"(logits on the check crops differ by {drift:.3g} > {CHECK_ATOL}; torch {torch.__version__} may "
            "initialise differently): install the torch that olvf[export] pins, or retrain the heads"
        )
    return model


def demo_source(arch: Architecture, classifiers: DemoClassifiers) -> dict[str, object]:
    """The manifest's record of where a demo classifier came from; enough to rebuild it."""
    return {
        "demo_seed": classifiers.heads[arch.name].seed,
        "demo_weights": DEMO_CLASSIFIERS_NAME,
        "sha256": classifiers.sha256,
        "record": "export/demo_classifiers.md",
        "format": f"backbone: torchvision {arch.name} from the seed, residual gain {classifiers.residual_gain}, "
        "BatchNorm calibrated on synthetic crops; head: trained on phantom vertebrae (state_dict, weights_only)",
        "note": DEMO_NOTE,
    }


def check_demo_preprocessing(preprocessing: Preprocessing, classifiers: DemoClassifiers) -> None:
    """The demo heads only mean something on crops prepared as they were trained on."""
    trained = (
        tuple(classifiers.input_size),
        tuple(classifiers.mean),
        tuple(classifiers.std),
        classifiers.interpolation,
    )
    given = (
        tuple(preprocessing.input_size),
        tuple(preprocessing.mean),
        tuple(preprocessing.std),
        preprocessing.interpolation,
    )
    if trained != given:
        raise UsageError(
            f"--demo: the demo heads were trained on {classifiers.input_size[0]}x{classifiers.input_size[1]} crops, "
            f"{classifiers.interpolation} resizing, mean {classifiers.mean}, std {classifiers.std}; drop "
            "--input-size, --mean, --std and --interpolation"
        )


def demo_members(classifiers: DemoClassifiers | None = None) -> list[tuple[Architecture, nn.Module, dict[str, object]]]:
    """The study's three architectures as demo classifiers, each with its manifest source."""
    classifiers = classifiers or load_demo_classifiers()
    return [(arch, demo_classifier(arch, classifiers), demo_source(arch, classifiers)) for arch in STUDY_ENSEMBLE]


def rebuild_demo_model(arch: Architecture, source: dict[str, object], input_size: tuple[int, int]) -> nn.Module:
    """A demo model from a manifest source: trained demo heads where the source names them, else seeded random."""
    if "demo_weights" not in source:
        return demo_model(arch, int(source["demo_seed"]), input_size)  # type: ignore[call-overload]
    classifiers = load_demo_classifiers()
    if classifiers.sha256 != source.get("sha256"):
        raise BackendError(
            f"this installation's {DEMO_CLASSIFIERS_NAME} is not the one the bundle was exported with "
            "(sha256 differs from the manifest's source); re-export the demo bundle"
        )
    return demo_classifier(arch, classifiers)


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
