"""TensorRT build choices that can be checked without TensorRT."""

from __future__ import annotations

import pytest

from olvf.errors import BackendError
from olvf.runtime.manifest import GraphSpec
from olvf.runtime.runners.tensorrt.builder import build_plan, count_half_in_engine_information
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


def test_half_layers_are_counted_from_engine_information() -> None:
    info = {
        "Layers": [
            {"Name": "conv1", "Outputs": [{"Format/Datatype": "Half format NCHW"}]},
            {"Name": "softmax", "Outputs": [{"Format/Datatype": "Float format NCHW"}]},
            "a layer described only by name",
        ]
    }
    assert count_half_in_engine_information(info) == 1
    assert count_half_in_engine_information({"Layers": []}) == 0
