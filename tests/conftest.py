"""Shared fixtures: checkpoints and bundles made by the tests themselves, never downloaded.

Full-size bundles cost about 30 s per graph to export on two cores, so each is
built once per session. Failure paths of the exporter use tiny registered
architectures (same torchvision classes, a few layers) that export in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peers import orthanc  # noqa: F401  (fixture: a real Orthanc PACS for the DICOM writer tests)

from olvf.export import architectures
from olvf.export.architectures import Architecture


def _tiny_resnet(num_classes: int) -> torch.nn.Module:
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=num_classes)


def _tiny_resnext(num_classes: int) -> torch.nn.Module:
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, [1, 1, 1, 1], groups=4, width_per_group=8, num_classes=num_classes)


def _tiny_densenet(num_classes: int) -> torch.nn.Module:
    from torchvision.models.densenet import DenseNet

    return DenseNet(growth_rate=8, block_config=(1, 1, 1, 1), num_init_features=16, bn_size=2, num_classes=num_classes)


def _register_tiny() -> tuple[Architecture, ...]:
    resnet, densenet = architectures.RESNET50, architectures.DENSENET161
    archs = (
        Architecture("tiny_resnet", "tiny-resnet", _tiny_resnet, "fc", resnet.features, resnet.cam_layer, "test"),
        Architecture(
            "tiny_densenet",
            "tiny-densenet",
            _tiny_densenet,
            "classifier",
            densenet.features,
            densenet.cam_layer,
            "test",
        ),
        Architecture("tiny_resnext", "tiny-resnext", _tiny_resnext, "fc", resnet.features, resnet.cam_layer, "test"),
    )
    for arch in archs:
        try:
            architectures.register(arch)
        except ValueError:
            pass  # already registered by an earlier import of this conftest
    return tuple(architectures.get(a.name) for a in archs)


TINY = _register_tiny()
TINY_SIZE = (64, 64)


@pytest.fixture(scope="session")
def tiny_members():
    """Tiny ResNet, DenseNet and ResNeXt with calibrated demo weights."""
    from olvf.export.demo import demo_model
    from olvf.export.pipeline import Member

    return [
        Member(arch, demo_model(arch, 100 + seed, TINY_SIZE), {"demo_seed": 100 + seed})
        for seed, arch in enumerate(TINY)
    ]


@pytest.fixture(scope="session")
def tiny_options():
    from olvf.export.pipeline import IMAGENET_MEAN, IMAGENET_STD, ExportOptions
    from olvf.runtime.bundle.manifest import Preprocessing

    return ExportOptions(
        precision="fp16",
        max_batch=4,
        preprocessing=Preprocessing(input_size=TINY_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_members, tiny_options) -> Path:
    from olvf.export.pipeline import export_bundle

    out = tmp_path_factory.mktemp("tiny") / "bundle"
    export_bundle(out, tiny_members, tiny_options, demo=True)
    return out


def save_checkpoint_forms(folder: Path, seed: int = 10) -> dict[str, Path]:
    """The study's three models with well-conditioned weights, saved as users save them."""
    from olvf.export.demo import demo_model

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    r50 = demo_model(architectures.RESNET50, seed).state_dict()
    paths["resnet50"] = folder / "resnet50_dataparallel.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in r50.items()}, "epoch": 40}, paths["resnet50"])

    d161 = demo_model(architectures.DENSENET161, seed + 1).state_dict()
    paths["densenet161"] = folder / "densenet161_plain.pth"
    torch.save(d161, paths["densenet161"])

    x50 = demo_model(architectures.RESNEXT50, seed + 2).state_dict()
    paths["resnext50_32x4d"] = folder / "resnext50_trainer.ckpt"
    torch.save(
        {"model_state_dict": {f"model.{k}": v for k, v in x50.items()}, "optimizer": {"lr": 0.01}},
        paths["resnext50_32x4d"],
    )
    return paths


@pytest.fixture(scope="session")
def checkpoint_files(tmp_path_factory) -> dict[str, Path]:
    return save_checkpoint_forms(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="session")
def exported_bundle(tmp_path_factory, checkpoint_files) -> Path:
    """A full-size FP32 + FP16 bundle exported through the CLI from checkpoint files."""
    from olvf.export.cli import main

    out = tmp_path_factory.mktemp("export") / "engines"
    code = main(
        [
            "--resnet50",
            str(checkpoint_files["resnet50"]),
            "--densenet161",
            str(checkpoint_files["densenet161"]),
            "--resnext50",
            str(checkpoint_files["resnext50_32x4d"]),
            "--precision",
            "fp16",
            "--max-batch",
            "8",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="session")
def cascade_bundle(tmp_path_factory, tiny_members, tiny_options) -> Path:
    """Tiny classifiers plus a constant detector that always reports the same five bodies.

    The detector (original-YOLOv5 layout, input 320) places five boxes down the
    middle of the letterboxed image: for a 2500x2000 radiograph (gain 0.128,
    32 px side padding) they are at x 875..1125 and y 195.3 + 468.75 i .. 429.7 + 468.75 i
    in original pixels, i = 0..4, levels L1-L5 by order.
    """
    import numpy as np
    from detector_fixtures import legacy_yolov5_onnx

    from olvf.export.pipeline import DetectorSource, export_bundle

    folder = tmp_path_factory.mktemp("cascade")
    rows = np.zeros((100, 6), np.float32)
    for i in range(5):
        rows[i] = [160, 40 + 60 * i, 32, 30, 0.9, 1.0]
    detector = legacy_yolov5_onnx(folder / "detector.onnx", rows)
    out = folder / "bundle"
    export_bundle(out, tiny_members, tiny_options, detector=DetectorSource(path=detector, imgsz=320), demo=True)
    return out


def write_calibration_images(folder: Path, count: int, size: tuple[int, int], seed: int = 3) -> Path:
    """8-bit gray PNG files, smooth ones and (every other one) white noise like the conformance suite's crops:
    a stand-in for a site's radiographs in INT8 calibration tests, covering the inputs the tests then feed."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        coarse = rng.uniform(0, 255, (8, 8)).astype(np.float32)
        image = cv2.resize(coarse, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        image = np.clip(image + rng.normal(0, 12 if i % 2 == 0 else 90, size), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"film_{i:02d}.png"), image)
    return folder


@pytest.fixture(scope="session")
def tiny_int8_bundle(tmp_path_factory, tiny_bundle: Path) -> Path:
    """The tiny bundle plus an NNCF INT8 graph calibrated on 16 synthetic images (one crop each: no detector)."""
    import shutil

    from olvf.errors import BackendError
    from olvf.export.quantize import add_int8_graph, import_nncf

    try:
        import_nncf()  # through olvf, which hides openvino_telemetry: a bare import would write ~/intel
    except BackendError as exc:
        pytest.skip(str(exc))

    root = tmp_path_factory.mktemp("int8")
    out = Path(shutil.copytree(tiny_bundle, root / "bundle"))
    add_int8_graph(out, write_calibration_images(root / "films", 16, (96, 96)), progress=lambda _line: None)
    return out


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory) -> Path:
    """``olvf-export --demo`` through the CLI, once per session (about a minute on two cores)."""
    from olvf.export.cli import main

    out = tmp_path_factory.mktemp("demo") / "bundle"
    # With the FP16 graph too: its export gate runs on the trained demo heads, and the FP16 route is tested.
    assert main(["--demo", "--precision", "fp16", "--out", str(out)]) == 0
    return out


def import_openvino_or_skip():
    """OpenVINO imported as olvf imports it (without its telemetry), or the test module skipped."""
    from olvf.runtime.runners.openvino import import_openvino

    try:
        return import_openvino()
    except ImportError:
        pytest.skip("needs OpenVINO: pip install 'olvf[openvino]'", allow_module_level=True)
