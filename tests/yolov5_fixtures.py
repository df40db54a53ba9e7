"""Checkpoints in the original ultralytics/yolov5 repository's format, made by the tests.

The classes pickled live in ``tests/yolov5_original/models`` (a test-only
stand-in for the repository's ``models`` package, importable as ``models``
only while a checkpoint is written). Each kind below mimics a release's
module set and what its checkpoints carry; the configurations follow the
published layouts with tiny width multiples so that tests stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from olvf.export.detector import sample_inputs

FIXTURE_ROOT = Path(__file__).with_name("yolov5_original")
ANCHORS_P3_P5 = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]

# Releases 1-5: Focus stem, BottleneckCSP (C3 from release 4), SPP.
CSP_SPP = {
    "backbone": [
        [-1, 1, "Focus", [64, 3]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 3, "BottleneckCSP", [128]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 9, "BottleneckCSP", [256]],
        [-1, 1, "Conv", [512, 3, 2]],
        [-1, 9, "BottleneckCSP", [512]],
        [-1, 1, "Conv", [1024, 3, 2]],
        [-1, 1, "SPP", [1024, [5, 9, 13]]],
        [-1, 3, "BottleneckCSP", [1024, False]],
    ],
    "head": [
        [-1, 1, "Conv", [512, 1, 1]],
        [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
        [[-1, 6], 1, "Concat", [1]],
        [-1, 3, "BottleneckCSP", [512, False]],
        [-1, 1, "Conv", [256, 1, 1]],
        [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
        [[-1, 4], 1, "Concat", [1]],
        [-1, 3, "BottleneckCSP", [256, False]],
        [-1, 1, "Conv", [256, 3, 2]],
        [[-1, 14], 1, "Concat", [1]],
        [-1, 3, "BottleneckCSP", [512, False]],
        [-1, 1, "Conv", [512, 3, 2]],
        [[-1, 10], 1, "Concat", [1]],
        [-1, 3, "BottleneckCSP", [1024, False]],
        [[17, 20, 23], 1, "Detect", ["nc", "anchors"]],
    ],
}

# Releases 4-5: the same with C3 blocks.
C3_SPP = {
    "backbone": [[f, n, "C3" if m == "BottleneckCSP" else m, a] for f, n, m, a in CSP_SPP["backbone"]],
    "head": [[f, n, "C3" if m == "BottleneckCSP" else m, a] for f, n, m, a in CSP_SPP["head"]],
}

# Releases 6-7: a 6x6 convolution as the stem, C3, SPPF.
C3_SPPF = {
    "backbone": [
        [-1, 1, "Conv", [64, 6, 2, 2]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 3, "C3", [128]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 6, "C3", [256]],
        [-1, 1, "Conv", [512, 3, 2]],
        [-1, 9, "C3", [512]],
        [-1, 1, "Conv", [1024, 3, 2]],
        [-1, 3, "C3", [1024]],
        [-1, 1, "SPPF", [1024, 5]],
    ],
    "head": [[f, n, m, a] for f, n, m, a in C3_SPP["head"]],
}

# Release 7 configurations' extra blocks, two detection levels, an activation set by the configuration.
V7_EXTRAS = {
    "activation": "nn.LeakyReLU(0.1)",
    "backbone": [
        [-1, 1, "Conv", [64, 6, 2, 2]],
        [-1, 1, "GhostConv", [128, 3, 2]],
        [-1, 3, "C3Ghost", [128]],
        [-1, 1, "DWConv", [256, 3, 2]],
        [-1, 6, "C3x", [256]],
        [-1, 1, "Conv", [512, 3, 2]],
        [-1, 3, "C3TR", [512]],
        [-1, 1, "SPPF", [512, 5]],
    ],
    "head": [
        [-1, 1, "Conv", [256, 1, 1]],
        [-1, 1, "DWConvTranspose2d", [256, 2, 2]],
        [[-1, 4], 1, "Concat", [1]],
        [-1, 3, "C3", [256, False]],
        [-1, 1, "Conv", [256, 3, 2]],
        [[-1, 8], 1, "Concat", [1]],
        [-1, 3, "C3x", [512, False]],
        [[11, 14], 1, "Detect", ["nc", "anchors"]],
    ],
}


@dataclass(frozen=True)
class Kind:
    """One kind of checkpoint: a release's module set and what its checkpoints carry."""

    name: str
    layout: dict[str, Any]
    nc: int
    depth: float
    width: float
    anchors: list[list[int]] = field(default_factory=lambda: ANCHORS_P3_P5)
    conv_act: str = "SiLU"
    csp_act: str = "SiLU"
    model_class: str = "Model"
    legacy_buffers: bool = False  # releases <= 5 saved anchor_grid as a buffer
    stale_grids: bool = False  # release 6.1 cached grids without the -0.5 offset
    stripped: bool = False  # strip_optimizer: ema folded into model, optimizer dropped
    autoanchor: float = 1.0  # training replaced the configured anchors (buffer = yaml x this)
    names_as_dict: bool = False
    imgsz: int = 64


KINDS = (
    Kind(
        "r3-focus-csp-spp-hardswish",
        CSP_SPP,
        nc=1,
        depth=0.33,
        width=0.125,
        conv_act="Hardswish",
        csp_act="LeakyReLU",
        legacy_buffers=True,
    ),
    Kind("r5-focus-c3-spp-silu", C3_SPP, nc=3, depth=0.67, width=0.25, legacy_buffers=True, autoanchor=1.25),
    Kind(
        "r6.1-c3-sppf-stale-grids", C3_SPPF, nc=1, depth=0.33, width=0.0625, stale_grids=True, stripped=True, imgsz=96
    ),
    Kind(
        "r7-c3x-c3tr-ghost-dwconv-leaky",
        V7_EXTRAS,
        nc=2,
        depth=0.33,
        width=0.125,
        model_class="DetectionModel",
        anchors=ANCHORS_P3_P5[:2],
        conv_act="LeakyReLU",
        csp_act="LeakyReLU",
        autoanchor=0.8,
        names_as_dict=True,
    ),
)
KIND = {k.name: k for k in KINDS}
OBJECTNESS = (-6, 4)
VARIANCE_FLOOR = 0.25  # mean and spread of the head's objectness logits on noise

_ACTIVATIONS = {
    "SiLU": nn.SiLU,
    "Hardswish": nn.Hardswish,
    "LeakyReLU": lambda: nn.LeakyReLU(0.1),
}


@contextlib.contextmanager
def fixture_models() -> Iterator[Any]:
    """The fixture's ``models`` package importable as ``models`` for the block only; what was there is restored."""
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "models" or k.startswith("models.")}
    sys.path.insert(0, str(FIXTURE_ROOT))
    try:
        importlib.invalidate_caches()
        yield importlib.import_module("models.yolo"), importlib.import_module("models.common")
    finally:
        sys.path.remove(str(FIXTURE_ROOT))
        for key in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
            del sys.modules[key]
        sys.modules.update(saved)


def definition(kind: Kind) -> dict[str, Any]:
    layout = copy.deepcopy(kind.layout)
    return {
        "nc": kind.nc,
        "depth_multiple": kind.depth,
        "width_multiple": kind.width,
        "anchors": copy.deepcopy(kind.anchors),
        **layout,
    }


def _calibrate(model: nn.Module, size: int, seed: int) -> None:
    """Random weights with BatchNorm statistics of random images (else activations fade within a few layers).

    Variances are floored: a channel that barely varies on the calibration images would otherwise multiply
    small differences between inputs many times over, layer after layer, and make the network chaotic (its
    scores swinging from nothing to saturated between two noise images).
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    images = np.concatenate([sample_inputs(size, None, seed=seed + i)[0] for i in range(4)])
    with torch.no_grad():
        model(torch.from_numpy(images))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.03
            module.running_var.clamp_(min=VARIANCE_FLOOR)
    model.eval()


def _shape_scores(model: nn.Module, size: int, seed: int) -> None:
    """Scale the head so that its logits look like a trained detector's on noise: mostly background.

    Objectness logits get the mean and spread of ``OBJECTNESS`` on the
    parity check's noise image (a few rows confident, most far below 0.001),
    class logits mean 0 and spread 2, box logits mean 0 and spread 1 (boxes
    about the size of their anchors, not collapsed to a line): parity is then
    checked on tens of distinct boxes rather than on a sea of near-ties or
    degenerate boxes.
    """
    head = model.model[-1]
    features: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: features.extend(args[0]))
    # The noise image the export's parity check feeds and three like it: a random network's logits vary a lot
    # from one kind of input to another (smoothed noise gives far smaller ones than sharp noise).
    probe = np.concatenate([sample_inputs(size, None, seed=s)[0] for s in range(4)])
    with torch.no_grad():
        model(torch.from_numpy(probe))
        hook.remove()
        for conv, feature in zip(head.m, features):
            logits = conv(feature).transpose(0, 1).reshape(head.na, head.no, -1)
            weight = conv.weight.view(head.na, head.no, -1)
            bias = conv.bias.view(head.na, head.no)
            for column in range(head.no):
                # Box logits near 0 (boxes about the anchors' size, none degenerate), scores spread.
                target_mean, target_std = (0.0, 1.0) if column < 4 else OBJECTNESS if column == 4 else (0.0, 2.0)
                mean, std = logits[:, column].mean(dim=1), logits[:, column].std(dim=1)
                scale = target_std / std
                weight[:, column] *= scale[:, None]
                bias[:, column] = target_mean + (bias[:, column] - mean) * scale


@dataclass
class Written:
    """A checkpoint file and the fixture's own model for its weights (float32, as loaded from FP16)."""

    path: Path
    reference: nn.Module
    names: tuple[str, ...]
    kind: Kind


def write_checkpoint(
    path: Path, kind: Kind, seed: int = 0, *, mutate: Any = None, legacy_format: bool = False
) -> Written:
    """Save ``kind`` at ``path`` as the repository's train.py saves it. ``mutate(model)`` edits before saving;
    ``legacy_format``: torch's serialization before 1.6 (pickles and raw storages, no zip archive)."""
    with fixture_models() as (yolo, common):
        torch.manual_seed(seed)
        common.ACTIVATION["factory"] = _ACTIVATIONS[kind.conv_act]
        cfg = definition(kind)
        model_class = getattr(yolo, kind.model_class)
        model = model_class(cfg, legacy_buffers=kind.legacy_buffers)
        # BottleneckCSP's own activation differed from Conv's in early releases.
        for module in model.modules():
            if type(module).__name__ == "BottleneckCSP":
                module.act = _ACTIVATIONS[kind.csp_act]()
        head = model.model[-1]
        if kind.autoanchor != 1.0:
            head.anchors.mul_(kind.autoanchor)  # what autoanchor does: the buffer changes, the yaml does not
        _calibrate(model, kind.imgsz, seed)
        _shape_scores(model, kind.imgsz, seed)
        names = tuple(f"vertebra{i}" for i in range(kind.nc))
        model.names = dict(enumerate(names)) if kind.names_as_dict else list(names)
        if kind.stale_grids:
            # Cached by release 6.1 for a 640 input, without the -0.5 offset: must never be used.
            for i, stride in enumerate(head.stride.tolist()):
                cells = 640 // int(stride)
                ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
                head.grid[i] = torch.stack((xs, ys), 2).expand(1, head.na, cells, cells, 2).float()
                head.anchor_grid[i] = (
                    (head.anchors[i] * stride).view(1, head.na, 1, 1, 2).expand(1, head.na, cells, cells, 2)
                )
        if mutate is not None:
            mutate(model)
        ema = model
        trained = copy.deepcopy(model)  # the non-EMA weights differ: the reader must take ema
        with torch.no_grad():
            for p in trained.parameters():
                p.add_(0.05 * torch.randn_like(p))
        optimizer = torch.optim.SGD(trained.parameters(), lr=0.01, momentum=0.937)
        trained.train()
        trained(torch.rand(1, 3, 64, 64)).sum().backward()
        optimizer.step()
        trained.eval()
        for p in trained.parameters():
            p.grad = None
        if kind.stripped:
            ckpt = {
                "epoch": -1,
                "best_fitness": None,
                "model": copy.deepcopy(ema).half(),
                "ema": None,
                "updates": None,
                "optimizer": None,
            }
        else:
            ckpt = {
                "epoch": 41,
                "best_fitness": np.array([0.61]),
                "model": copy.deepcopy(trained).half(),
                "ema": copy.deepcopy(ema).half(),
                "updates": 1234,
                "optimizer": optimizer.state_dict(),
            }
        ckpt["opt"] = vars(
            argparse.Namespace(
                imgsz=kind.imgsz,
                img_size=[kind.imgsz, kind.imgsz],
                epochs=42,
                hyp={"lr0": 0.01, "anchor_t": 4.0},
                save_dir="runs/train/exp3",
            )
        )
        ckpt["git"] = {"remote": "https://github.com/ultralytics/yolov5", "branch": "master", "commit": "0000000"}
        ckpt["date"] = "2022-11-22T12:00:00"
        torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy_format)
    reference = copy.deepcopy(ema).half().float().eval()
    return Written(path=path, reference=reference, names=names, kind=kind)


def reference_forward(written: Written, batch: np.ndarray) -> np.ndarray:
    """The fixture's own forward (an implementation independent of olvf's) on ``batch``."""
    with torch.no_grad():
        return written.reference(torch.from_numpy(batch)).numpy()


def replace_pickle(path: Path, data: bytes) -> Path:
    """Rewrite the torch.save zip archive at ``path`` with ``data`` as its ``data.pkl`` (pickle bytes by hand)."""
    with zipfile.ZipFile(path) as archive:
        records = {info.filename: archive.read(info.filename) for info in archive.infolist()}
    records[next(name for name in records if name.endswith("/data.pkl"))] = data
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, raw in records.items():
            archive.writestr(name, raw)
    return path


def hostile_checkpoint(path: Path, data: bytes) -> Path:
    """A torch.save zip archive whose ``data.pkl`` is ``data``."""
    torch.save({"model": None}, path)
    return replace_pickle(path, data)
