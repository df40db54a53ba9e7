"""Detectors trained with the original ultralytics/yolov5 repository, rebuilt without running the file's code.

Such a ``best.pt`` is a pickle of the repository's ``models.yolo.Model``
(``DetectionModel`` from release 6.2): ``torch.load(weights_only=True)``
refuses it and a plain ``torch.load`` runs whatever the file says. Here it
is read by :mod:`olvf.export.safe_pickle` into plain data and inert
stand-ins, and rebuilt from what it records:

- the model definition it embeds (``yaml``: ``nc``, depth and width
  multiples, anchors, backbone and head), laid out exactly as the
  repository's ``parse_model`` lays it out, with olvf's own blocks
  (:mod:`olvf.export.yolov5_modules`);
- each module's activation and BatchNorm epsilon, from the pickled modules
  (releases differ: LeakyReLU, Hardswish, SiLU, a config's ``activation``);
- the weights of ``ema`` if the file has them, else of ``model``, and the
  head's ``anchors`` buffer (training may have replaced the configured
  anchors with its own, so the buffer, not the yaml, is the truth);
- the strides, measured on the rebuilt network and checked against the file's;
- the class names and the training image size.

Cached ``grid`` and ``anchor_grid`` tensors are ignored: release 6.1 cached
grids without the -0.5 cell offset that later code adds, so reusing them
shifts boxes. The rebuilt head computes its grid from the feature maps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from olvf.errors import CheckpointError
from olvf.export import yolov5_modules as blocks
from olvf.export.safe_pickle import Inert, RefusedGlobal, load_checkpoint

FORMAT = "yolov5-original"
DEFAULT_IMGSZ = 640  # the repository's training default
_DETECTION_CLASSES = ("Model", "DetectionModel")
_STRIDE_PROBE = 256  # the input size the repository itself measures strides with
_SHOW = 5


@dataclass(frozen=True)
class OriginalYolov5:
    """A rebuilt detector: float32, eval mode, output ``(N, anchors, 5 + nc)`` in input pixels."""

    network: blocks.Yolov5
    names: tuple[str, ...]
    strides: tuple[int, ...]
    trained_imgsz: int | None
    weights: str  # the checkpoint entry the weights came from: "ema" or "model"
    blocks: tuple[str, ...]  # the layer types of its definition, in order of first use

    @property
    def stride(self) -> int:
        return max(self.strides)

    def record(self) -> dict[str, Any]:
        """What the manifest keeps about the source besides the file's name and hash."""
        return {"weights": self.weights, "strides": list(self.strides), "blocks": list(self.blocks)}


def read_original_yolov5(path: Path) -> OriginalYolov5 | None:
    """Rebuild ``path`` if it is a detector of the original repository; ``None`` if it is an ultralytics one.

    Anything else (not a checkpoint, damaged, a segmentation or classification
    model, a layer type olvf does not know, a pickle naming code) raises a
    one-line :class:`CheckpointError`; nothing from the file is ever run.
    """
    try:
        checkpoint = load_checkpoint(path)
    except RefusedGlobal as refused:
        if refused.module == "ultralytics" or refused.module.startswith("ultralytics."):
            return None
        raise CheckpointError(
            f"{path.name} is not a YOLOv5 checkpoint olvf can read: its pickle asks for "
            f"{refused.module}.{refused.name}, which neither the original YOLOv5 repository nor the ultralytics "
            "package puts in a checkpoint; refused without running anything from the file"
        ) from None
    model, entry = _find_model(checkpoint, path)
    attrs = model.attrs
    definition = attrs.get("yaml")
    _refuse_other_tasks(model, definition, path)
    if not isinstance(definition, dict) or "backbone" not in definition or "head" not in definition:
        raise CheckpointError(
            f"{path.name}: the pickled {model.class_name} carries no model definition (its yaml with backbone and "
            "head); it cannot be rebuilt without running its code. Export it with the repository's export.py and "
            "pass the .onnx"
        )
    network, layer_types = build_network(definition, path)
    standing = _child(model, "model")
    if standing is None:
        raise CheckpointError(f"{path.name}: the pickled model has no layers")
    _configure(network.model, standing, path, "model")
    _load_weights(network, _state_dict(model), path)
    strides = _measure_strides(network, model, path)
    network.head.strides = tuple(float(s) for s in strides)
    return OriginalYolov5(
        network=network.float().eval(),
        names=_names(attrs.get("names"), network.head.nc, path),
        strides=strides,
        trained_imgsz=_trained_imgsz(checkpoint),
        weights=entry,
        blocks=tuple(dict.fromkeys(layer_types)),
    )


def _find_model(checkpoint: Any, path: Path) -> tuple[Inert, str]:
    if isinstance(checkpoint, Inert):  # torch.save(model) rather than the training dict
        return checkpoint, "model"
    if isinstance(checkpoint, Mapping):
        for entry in ("ema", "model"):  # strip_optimizer sets ema to None once it has become the model
            if isinstance(checkpoint.get(entry), Inert):
                return checkpoint[entry], entry
        keys = ", ".join(map(str, list(checkpoint)[:_SHOW])) or "none"
        raise CheckpointError(
            f"{path.name} holds no pickled YOLOv5 model under 'model' or 'ema' (a dict with keys {keys}); pass "
            "the best.pt or last.pt that training wrote"
        )
    raise CheckpointError(f"{path.name} holds a {type(checkpoint).__name__}, not a YOLOv5 checkpoint")


def _refuse_other_tasks(model: Inert, definition: Any, path: Path) -> None:
    if not model.origin.startswith("models."):
        raise CheckpointError(
            f"{path.name} holds a {model.origin}, not a model of the YOLOv5 repository (models.yolo.Model)"
        )
    layer_names = []
    if isinstance(definition, dict):
        for entry in [*(definition.get("backbone") or []), *(definition.get("head") or [])]:
            if isinstance(entry, (list, tuple)) and len(entry) == 4:
                layer_names.append(str(entry[2]))
    if model.class_name == "SegmentationModel" or "Segment" in layer_names:
        raise CheckpointError(
            f"{path.name} is a YOLOv5 segmentation model (Segment head); olvf needs a detection model "
            "(train with the repository's train.py, not segment/train.py)"
        )
    if model.class_name == "ClassificationModel" or "Classify" in layer_names:
        raise CheckpointError(
            f"{path.name} is a YOLOv5 classification model; olvf needs a detection model for --detector"
        )
    if model.class_name not in _DETECTION_CLASSES:
        raise CheckpointError(f"{path.name} holds a {model.origin}, not a YOLOv5 detection model (models.yolo.Model)")


# ----------------------------------------------------------------------------- the definition


def make_divisible(value: float, divisor: int = 8) -> int:
    return math.ceil(value / divisor) * divisor


def _argument(value: Any, nc: int, anchors: Any) -> Any:
    """A yaml argument as the repository reads it, without evaluating any text."""
    if not isinstance(value, str):
        return value
    named = {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}
    return named.get(value, value)  # other text (the upsampling mode) stays text, as in the repository


def _normalise_name(name: Any) -> str:
    text = str(name)
    return "nn." + text[len("torch.nn.") :] if text.startswith("torch.nn.") else text


def _supported() -> str:
    names = [*blocks.CHANNEL_BLOCKS, *blocks.PASS_THROUGH, "Concat", "Detect", "nn.BatchNorm2d"]
    return ", ".join(sorted(names))


def build_network(definition: Mapping[str, Any], path: Path) -> tuple[blocks.Yolov5, list[str]]:
    """The network a model definition describes, with placeholder activations and zero weights.

    Channel counts, repeats and wiring follow the repository's ``parse_model``:
    output channels scaled by the width multiple and rounded up to a multiple
    of 8, repeats scaled by the depth multiple (Python rounding, at least 1).
    """
    try:
        nc = int(definition["nc"])
        depth = float(definition.get("depth_multiple", 1.0))
        width = float(definition.get("width_multiple", 1.0))
        anchors = definition["anchors"]
        layers_spec = list(definition["backbone"]) + list(definition["head"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: its model definition lacks or garbles {exc}") from None
    per_level = anchors if isinstance(anchors, int) else len(anchors[0]) // 2
    head_channels = per_level * (nc + 5)
    channels = [int(definition.get("ch", 3))]
    if channels[0] != 3:
        raise CheckpointError(f"{path.name}: the model takes {channels[0]} input channels; olvf feeds 3")

    layers: list[nn.Module] = []
    sources: list[int | list[int]] = []
    names: list[str] = []
    for i, entry in enumerate(layers_spec):
        if not isinstance(entry, (list, tuple)) or len(entry) != 4:
            raise CheckpointError(f"{path.name}: layer {i} of its definition is not [from, number, module, args]")
        source, repeats, raw_name, raw_args = entry
        wired = isinstance(source, int) or (
            isinstance(source, list) and bool(source) and all(isinstance(j, int) for j in source)
        )
        if not wired or not isinstance(repeats, int) or repeats < 1 or not isinstance(raw_args, list):
            raise CheckpointError(f"{path.name}: layer {i} of its definition is not [from, number, module, args]")
        name = _normalise_name(raw_name)
        args = [_argument(a, nc, anchors) for a in raw_args]
        n = max(round(repeats * depth), 1) if repeats > 1 else repeats
        try:
            if name in blocks.CHANNEL_BLOCKS:
                c_in, c_out = channels[source], args[0]
                if c_out != head_channels:
                    c_out = make_divisible(c_out * width, 8)
                args = [c_in, c_out, *args[1:]]
                if name in blocks.REPEATED_INSIDE:
                    args.insert(2, n)
                    n = 1
                factory: Any = blocks.CHANNEL_BLOCKS[name]
            elif name == "nn.BatchNorm2d":
                c_out = channels[source]
                args, factory = [c_out], nn.BatchNorm2d
            elif name == "Concat":
                c_out, factory = sum(channels[j] for j in source), blocks.Concat
            elif name == "Detect":
                if i != len(layers_spec) - 1:
                    raise CheckpointError(f"{path.name}: Detect is layer {i}, not the last layer")
                args = [args[0], args[1], [channels[j] for j in source]]
                c_out, factory = 0, blocks.Detect
            elif name in blocks.PASS_THROUGH:
                c_out, factory = channels[source], blocks.PASS_THROUGH[name]
            else:
                raise CheckpointError(
                    f"{path.name}: layer {i} is a {name}, which olvf cannot rebuild (it rebuilds {_supported()}); "
                    "export this model with the repository's export.py and pass the .onnx"
                )
            module = nn.Sequential(*(factory(*args) for _ in range(n))) if n > 1 else factory(*args)
        except CheckpointError:
            raise
        except (TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise CheckpointError(
                f"{path.name}: layer {i} ({name} {raw_args}) of its definition cannot be built ({exc})"
            ) from None
        if i == 0:
            channels = []
        channels.append(c_out)
        layers.append(module)
        sources.append(source)
        names.append(name)
    if not names or names[-1] != "Detect":
        raise CheckpointError(f"{path.name}: its definition does not end in a Detect head")
    return blocks.Yolov5(layers, sources).eval(), names


# ----------------------------------------------------------------------------- what the pickled modules record

_ACTIVATION_TYPES = (
    nn.SiLU,
    nn.Hardswish,
    nn.LeakyReLU,
    nn.ReLU,
    nn.ReLU6,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    blocks.Mish,
)


def _child(stand_in: Inert, name: str) -> Inert | None:
    child = _mapping(stand_in.attrs.get("_modules")).get(name)
    return child if isinstance(child, Inert) else None


def _configure(ours: nn.Module, theirs: Inert, path: Path, where: str) -> None:
    """Set every activation and BatchNorm epsilon as the pickled module at the same place has it."""
    for name, child in list(ours.named_children()):
        place = f"{where}.{name}"
        counterpart = _child(theirs, name)
        if isinstance(child, _ACTIVATION_TYPES):
            if counterpart is None:
                raise CheckpointError(f"{path.name}: {place} is missing from the pickled model, which its yaml has")
            if counterpart.class_name not in blocks.ACTIVATIONS:
                raise CheckpointError(
                    f"{path.name}: {place} is a {counterpart.origin} activation, which olvf cannot rebuild "
                    f"(it knows {', '.join(blocks.ACTIVATIONS)})"
                )
            slope = counterpart.attrs.get("negative_slope", 0.01)
            if not isinstance(slope, (int, float)):
                raise CheckpointError(f"{path.name}: {place} has no numeric negative_slope")
            setattr(ours, name, blocks.activation(counterpart.class_name, float(slope)))
            continue
        if counterpart is None:
            continue  # weights missing here are reported by the weight check, by name
        if isinstance(child, nn.BatchNorm2d):
            eps = counterpart.attrs.get("eps", child.eps)
            if isinstance(eps, (int, float)):
                child.eps = float(eps)
        _configure(child, counterpart, path, place)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _state_dict(root: Inert) -> dict[str, torch.Tensor]:
    """Parameters and saved buffers of the pickled module tree, by name (walked without recursion: a hostile
    file may nest modules thousands deep or in a cycle)."""
    state: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    pending = [(root, "")]
    while pending:
        stand_in, prefix = pending.pop()
        if id(stand_in) in seen:
            continue
        seen.add(id(stand_in))
        attrs = stand_in.attrs
        transient = attrs.get("_non_persistent_buffers_set")
        transient = transient if isinstance(transient, (set, frozenset)) else set()
        for group in ("_parameters", "_buffers"):
            for key, value in _mapping(attrs.get(group)).items():
                if isinstance(value, torch.Tensor) and not (group == "_buffers" and key in transient):
                    state[f"{prefix}{key}"] = value
        for key, child in _mapping(attrs.get("_modules")).items():
            if isinstance(child, Inert):
                pending.append((child, f"{prefix}{key}."))
    return state


def _load_weights(network: blocks.Yolov5, state: dict[str, torch.Tensor], path: Path) -> None:
    head = f"model.{len(network.model) - 1}."
    # Derived tensors some releases keep as buffers: rebuilt, never trusted.
    state = {k: v for k, v in state.items() if k not in (f"{head}anchor_grid", f"{head}grid")}
    reference = network.state_dict()
    missing = [k for k in reference if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in reference]
    wrong = [
        f"{k} {tuple(state[k].shape)} (rebuilt {tuple(v.shape)})"
        for k, v in reference.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        details = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shapes", wrong)):
            if items:
                details.append(f"{label} {', '.join(items[:_SHOW])}" + (" ..." if len(items) > _SHOW else ""))
        fused = any(k.endswith(".conv.bias") for k in unexpected) and any(".bn." in k for k in missing)
        raise CheckpointError(
            f"{path.name}: its weights do not fit the model its yaml describes: {'; '.join(details)}"
            + ("; the model was saved fused (Conv and BatchNorm merged), which olvf does not read" if fused else "")
        )
    floats = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    bad = [k for k, v in floats.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path.name}: weights hold NaN or infinite values (first: {bad[0]})")
    network.float().load_state_dict(floats, strict=False)  # strictness checked above, counters may be absent


def _measure_strides(network: blocks.Yolov5, model: Inert, path: Path) -> tuple[int, ...]:
    try:
        shapes = network.level_shapes(_STRIDE_PROBE)
    except (RuntimeError, IndexError, TypeError, ValueError) as exc:  # layers that do not fit together
        first = str(exc).splitlines()[0][:150] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path.name}: the network its definition describes does not run ({first})") from None
    measured = tuple(_STRIDE_PROBE // h for h, _ in shapes)
    if any(_STRIDE_PROBE % h or (w != h) for h, w in shapes):
        raise CheckpointError(f"{path.name}: the rebuilt network's levels {shapes} give no whole strides")
    recorded = model.attrs.get("stride")
    if isinstance(recorded, torch.Tensor):
        if tuple(int(s) for s in recorded.float().round().tolist()) != measured:
            raise CheckpointError(
                f"{path.name}: the rebuilt network has strides {list(measured)} but the checkpoint records "
                f"{[float(s) for s in recorded.float().tolist()]}; its definition and weights disagree"
            )
    return measured


def _names(value: Any, nc: int, path: Path) -> tuple[str, ...]:
    if isinstance(value, Mapping):
        if sorted(k for k in value if isinstance(k, int)) != list(range(len(value))):
            raise CheckpointError(f"{path.name}: its class names are not numbered 0..{len(value) - 1}")
        names = tuple(str(value[k]) for k in range(len(value)))
    elif isinstance(value, (list, tuple)):
        names = tuple(str(v) for v in value)
    else:
        names = tuple(str(i) for i in range(nc))  # what the repository itself names unnamed classes
    if len(names) != nc:
        raise CheckpointError(f"{path.name}: it names {len(names)} classes but its head has {nc}")
    return names


def _trained_imgsz(checkpoint: Any) -> int | None:
    if not isinstance(checkpoint, Mapping):
        return None
    for key in ("opt", "train_args"):
        options = checkpoint.get(key)
        options = options.attrs if isinstance(options, Inert) else options
        if not isinstance(options, Mapping):
            continue
        size = options.get("imgsz", options.get("img_size"))
        if isinstance(size, (list, tuple)) and size and all(isinstance(v, int) for v in size):
            size = max(size)  # older releases: [train, test]
        if isinstance(size, int) and size > 0:
            return size
    return None
