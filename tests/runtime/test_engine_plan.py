"""TensorRT build choices and the precision check, which can be checked without TensorRT."""

from __future__ import annotations

import pytest

from olvf.errors import BackendError
from olvf.runtime.bundle.manifest import GraphSpec
from olvf.runtime.runners.tensorrt.builder import build_plan
from olvf.runtime.runners.tensorrt.precision import SIZE_JUDGED_FROM, check_precision, read_layer_precisions
from olvf.runtime.runners.tensorrt.profiles import profile_shapes


def test_tensorrt_10_uses_the_fp16_flag_on_the_fp32_graph() -> None:
    plan = build_plan("10.13.3.9")
    assert plan.fp16_flag and not plan.strongly_typed and plan.graph_precision == "fp32"


def test_tensorrt_11_builds_a_strongly_typed_network_from_the_fp16_graph() -> None:
    plan = build_plan("11.0.0.1")
    assert plan.strongly_typed and not plan.fp16_flag and plan.graph_precision == "fp16"


def test_older_tensorrt_is_refused() -> None:
    with pytest.raises(BackendError, match="TensorRT 8.6.1 is too old"):
        build_plan("8.6.1")


def test_profile_spans_one_crop_to_the_maximum() -> None:
    graph = GraphSpec("ensemble", "e.onnx", "fp16", 18, "crops", ("N", 3, 224, 224), ("p",), max_batch=32)
    assert profile_shapes(graph, typical=5) == {
        "min": [1, 3, 224, 224],
        "opt": [5, 3, 224, 224],
        "max": [32, 3, 224, 224],
    }
    assert profile_shapes(graph, typical=64)["opt"][0] == 32


def _layers(*outputs: dict[str, str]) -> dict[str, object]:
    return {"Layers": [{"Name": f"layer{i}", "Outputs": [o]} for i, o in enumerate(outputs)]}


# TensorRT 10: one field, in the two vocabularies NVIDIA's trt-engine-explorer reads (trex/activations.py).
TRT10_FP16 = _layers(
    {"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"},
    {"Format/Datatype": "Row major linear FP16 format"},
    {"Format/Datatype": "Row major linear FP32"},
    {"Format/Datatype": "Row major linear Int32"},
)
TRT10_KGEN_FP16 = _layers({"Format/Datatype": "Half"}, {"Format/Datatype": "Float"})
TRT10_FP32 = _layers({"Format/Datatype": "Row major linear FP32"}, {"Format/Datatype": "Float"})
# TensorRT 11: "Format" and "DataType" ("Float" and "... FP32 format (kLINEAR)" as the 11.x migration guide shows).
TRT11_FP16 = _layers(
    {"Format": "Channel major FP16 format where channel % 8 == 0 (kHWC8)", "DataType": "Half"},
    {"Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Float"},
)
TRT11_FP32 = _layers(
    {"Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Float"},
    {"Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Float"},
)
# Spellings nothing documents: must never make an engine FP32.
TRT11_UNKNOWN = _layers({"Format": "kHWC8", "DataType": "Float16"}, {"Format": "kLINEAR", "DataType": "Float32"})


@pytest.mark.parametrize("info", [TRT10_FP16, TRT10_KGEN_FP16, TRT11_FP16], ids=["trt10", "trt10-kgen", "trt11"])
def test_fp16_layers_are_read_from_the_inspector(info) -> None:
    verdict = check_precision(info, engine_bytes=1, fp32_graph_bytes=None, expect_half=True)
    assert (verdict.precision, verdict.confirmed, verdict.disguised) == ("fp16", True, False)
    half = read_layer_precisions(info).half
    assert half >= 1 and f"inspector: {half} of {len(info['Layers'])} layers FP16" == verdict.evidence


def test_integer_layers_are_neither_fp16_nor_fp32() -> None:
    read = read_layer_precisions(TRT10_FP16)
    assert (read.layers, read.half, read.float32, read.unknown) == (4, 2, 1, 0)


@pytest.mark.parametrize("info", [TRT10_FP32, TRT11_FP32], ids=["trt10", "trt11"])
def test_an_engine_the_inspector_shows_fp32_is_fp32_in_disguise(info) -> None:
    verdict = check_precision(info, engine_bytes=1, fp32_graph_bytes=None, expect_half=True)
    assert verdict.disguised and verdict.precision == "fp32" and "none FP16" in verdict.evidence
    assert not check_precision(info, engine_bytes=1, fp32_graph_bytes=None, expect_half=False).disguised


def test_unknown_spellings_never_refuse_an_engine() -> None:
    """What an FP16 check on TensorRT 11's undocumented value strings did: refuse every engine as FP32."""
    verdict = check_precision(TRT11_UNKNOWN, engine_bytes=1, fp32_graph_bytes=None, expect_half=True)
    assert (verdict.precision, verdict.confirmed, verdict.disguised) == ("fp16", False, False)
    assert "not confirmed" in verdict.evidence and "Float16" in verdict.evidence


@pytest.mark.parametrize(
    "ratio,expected",
    [(0.52, ("fp16", True, False)), (0.98, ("fp32", True, True)), (0.82, ("fp16", False, False))],
    ids=["half-size", "full-size", "between"],
)
def test_otherwise_the_engine_size_against_the_fp32_graph_decides(ratio, expected) -> None:
    graph = 300 * 2**20  # the study's ensemble is about this size
    for info in (TRT11_UNKNOWN, {"Layers": ["conv1", "conv2"]}):  # unknown spellings, or layer names only
        verdict = check_precision(info, engine_bytes=int(ratio * graph), fp32_graph_bytes=graph, expect_half=True)
        assert (verdict.precision, verdict.confirmed, verdict.disguised) == expected
        assert f"{ratio:.2f} of the FP32 graph" in verdict.evidence


def test_a_small_graph_is_not_judged_by_size() -> None:
    small = SIZE_JUDGED_FROM - 1
    verdict = check_precision(TRT11_UNKNOWN, engine_bytes=small, fp32_graph_bytes=small, expect_half=True)
    assert not verdict.confirmed and not verdict.disguised and "too small" in verdict.evidence
