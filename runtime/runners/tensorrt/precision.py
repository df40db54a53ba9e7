"""Whether a built engine really runs in FP16: from the engine inspector where its spelling is known, else by size.

Exporters elsewhere silently built FP32 engines that claimed FP16. olvf reads the precision back, and
never from a string it cannot vouch for:

1. **Per-layer precision from the engine inspector** (DETAILED profiling verbosity), where the format
   is known. TensorRT 10 writes one ``"Format/Datatype"`` field per tensor, either a format
   description ("Channel major FP16 format where channel % 8 == 0", "Row major linear FP32") or a
   type name ("Half", "Float"); both vocabularies are those NVIDIA's own reader of this JSON,
   trt-engine-explorer, maps (``trex/activations.py``). TensorRT 11 splits it into ``"Format"`` and
   ``"DataType"`` (11.0 migration guide, "IEngineInspector JSON output"); the guide shows ``"Float"``
   and ``"Row major linear FP32 format (kLINEAR)"``, and nothing for FP16, so "Half" / "... FP16 ..."
   are read as the same vocabulary's FP16 words, not as documented fact. A spelling in neither
   vocabulary ("Float16", "kHWC8") makes that layer *unknown*: it never counts as FP32.
2. **Otherwise a measurable property: the engine's size against the FP32 graph's.** Layers that run in
   FP16 keep their weights in FP16, so an FP16 engine of a network whose weights dominate its size is
   about half the FP32 ONNX graph (ResNet-50: about 50 of 100 MB); an FP32 one is about as large as it.
   Only judged where the FP32 graph is at least :data:`SIZE_JUDGED_FROM` (the study's ensemble is about
   300 MB; a tiny graph is dominated by TensorRT's own data).

An engine is refused as "FP32 in disguise" only on evidence: every float layer the inspector describes
is FP32 in a known spelling, or (the inspector being unreadable) the engine is at least
:data:`FP32_FROM` of the FP32 graph. When neither can tell, the engine is kept, and the manifest says its
precision was not confirmed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SIZE_JUDGED_FROM = 16 * 2**20  # bytes of FP32 graph below which size says nothing
FP16_UP_TO = 0.75  # engine / FP32 graph: FP16 weights
FP32_FROM = 0.9  # engine / FP32 graph: FP32 weights

_HALF = {"fp16", "half"}
_FLOAT = {"fp32", "float"}
# Every other type word of the same vocabularies (trex's table): known, and not a float activation.
_OTHER = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "bfloat16", "fp8"}
_OTHER |= {"int4", "fp4", "e8m0", "double", "doublecomplex", "floatcomplex", "none"}


@dataclass(frozen=True)
class LayerPrecisions:
    """What the engine inspector says, layer by layer (layers with only integer outputs count as neither)."""

    layers: int
    half: int  # layers with an FP16 output
    float32: int  # layers whose float outputs are all FP32, in a known spelling
    unknown: int  # layers with an output whose type is spelled in a way not known here
    schema: str  # which inspector format was read
    example: str = ""  # an unknown spelling, for the message

    @property
    def readable(self) -> bool:
        return self.layers > 0 and self.unknown == 0


@dataclass(frozen=True)
class PrecisionCheck:
    """The verdict on one engine: its precision, whether that is confirmed, and the evidence in one line."""

    precision: str  # "fp16" or "fp32"
    confirmed: bool
    disguised: bool  # meant to be FP16, shown to be FP32: refuse it
    evidence: str


def _kind(value: Any) -> str:
    """One type description as "half", "float", "other" or "unknown"."""
    words = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", str(value))}
    if words & _HALF:
        return "half"
    if words & _FLOAT:
        return "float"
    if words & _OTHER or str(value).strip().lower() == "unknown format":
        return "other"
    return "unknown"


def _tensor_kind(tensor: dict[str, Any]) -> tuple[str, str]:
    """The kind of one tensor of a layer, and the spelling it was read from."""
    fields = {str(k).lower(): v for k, v in tensor.items()}
    if "format/datatype" in fields:  # TensorRT 10
        value = fields["format/datatype"]
        return _kind(value), str(value)
    if "datatype" in fields:  # TensorRT 11: the type field decides; the format only if the type is not known
        kind = _kind(fields["datatype"])
        if kind == "unknown" and "format" in fields:
            kind = _kind(fields["format"])
        return kind, f"{fields['datatype']} / {fields.get('format', '')}".strip(" /")
    return "unknown", ", ".join(sorted(str(k) for k in tensor))


def read_layer_precisions(info: dict[str, Any]) -> LayerPrecisions:
    """Count FP16, FP32 and unreadable layers in TensorRT's engine-information JSON (DETAILED verbosity)."""
    layers = [layer for layer in info.get("Layers", []) if isinstance(layer, dict)]
    tensors = [t for layer in layers for t in layer.get("Outputs", []) if isinstance(t, dict)]
    if not layers:
        schema = "layer names only"
    elif any("Format/Datatype" in t for t in tensors):
        schema = "TensorRT 10 Format/Datatype"
    else:
        schema = "TensorRT 11 Format + DataType"
    half = float32 = unknown = 0
    example = ""
    for layer in layers:
        kinds = [_tensor_kind(t) for t in layer.get("Outputs", []) if isinstance(t, dict)]
        found = {kind for kind, _ in kinds}
        if "half" in found:
            half += 1
        elif "unknown" in found:
            unknown += 1
            example = example or next(spelling for kind, spelling in kinds if kind == "unknown")
        elif "float" in found:
            float32 += 1
    return LayerPrecisions(len(layers), half, float32, unknown, schema, example)


def check_precision(
    info: dict[str, Any], *, engine_bytes: int, fp32_graph_bytes: int | None, expect_half: bool
) -> PrecisionCheck:
    """The engine's precision from its inspector output, else from its size against the FP32 graph's."""
    read = read_layer_precisions(info)
    if read.half:
        return PrecisionCheck("fp16", True, False, f"inspector: {read.half} of {read.layers} layers FP16")
    if not expect_half:
        return PrecisionCheck("fp32", read.readable, False, f"inspector: no FP16 layer among {read.layers}")
    if read.readable and read.float32:
        return PrecisionCheck(
            "fp32", True, True, f"inspector ({read.schema}): all {read.float32} float layers are FP32, none FP16"
        )
    unread = (
        f"inspector unreadable here ({read.unknown} of {read.layers} layers spelled e.g. {read.example!r})"
        if read.layers
        else "inspector without layer details"
    )
    if fp32_graph_bytes and fp32_graph_bytes >= SIZE_JUDGED_FROM:
        ratio = engine_bytes / fp32_graph_bytes
        size = f"engine {engine_bytes / 2**20:.1f} MiB = {ratio:.2f} of the FP32 graph's {fp32_graph_bytes / 2**20:.1f}"
        if ratio <= FP16_UP_TO:
            return PrecisionCheck("fp16", True, False, f"{unread}; {size} MiB: FP16 weights")
        if ratio >= FP32_FROM:
            return PrecisionCheck("fp32", True, True, f"{unread}; {size} MiB: FP32 weights")
        return PrecisionCheck("fp16", False, False, f"not confirmed: {unread}; {size} MiB, between the two")
    return PrecisionCheck("fp16", False, False, f"not confirmed: {unread}, and the graph is too small to judge by size")
