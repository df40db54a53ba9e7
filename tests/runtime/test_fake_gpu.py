"""The fake TensorRT / cuda-python in tests/fake_gpu behave like the real APIs where olvf relies on them."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_gpu_fixture import FAKE_GPU_DIR, use_fake_gpu

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

WEIGHTS = np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3) / 10.0


def tiny_onnx(path: Path, *, fp16: bool = False) -> Path:
    """Conv -> Relu -> GlobalAveragePool -> Flatten, input x [batch, 1, 4, 4] float32, output y [batch, 2] float32.

    With ``fp16`` the body runs in float16 between two Casts, as olvf's FP16 graphs do.
    """
    weights = numpy_helper.from_array(WEIGHTS.astype(np.float16 if fp16 else np.float32), "w")
    nodes = []
    source = "x"
    if fp16:
        nodes.append(helper.make_node("Cast", ["x"], ["x_half"], to=TensorProto.FLOAT16, name="/cast_in"))
        source = "x_half"
    body_out = "flat" if fp16 else "y"
    nodes += [
        helper.make_node("Conv", [source, "w"], ["conv"], pads=[1, 1, 1, 1], name="/conv/Conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="/relu/Relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["pool"], [body_out], name="/flatten/Flatten"),
    ]
    if fp16:
        nodes.append(helper.make_node("Cast", ["flat"], ["y"], to=TensorProto.FLOAT, name="/cast_out"))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def reference(x: np.ndarray) -> np.ndarray:
    """What the tiny graph computes, in numpy."""
    padded = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((x.shape[0], 2), np.float64)
    for k in range(2):
        conv = sum(WEIGHTS[k, 0, i, j] * padded[:, i : i + 4, j : j + 4] for i in range(3) for j in range(3))
        out[:, k] = np.maximum(conv, 0).mean(axis=(1, 2))
    return out.astype(np.float32)


def build(
    trt: Any,
    onnx_path: Path,
    *,
    fp16_flag: bool = False,
    strongly_typed: bool = False,
    shapes: tuple[list[int], list[int], list[int]] | None = ([1, 1, 4, 4], [2, 1, 4, 4], [4, 1, 4, 4]),
    profile_input: str = "x",
    cache: Any = None,
    monitor: Any = None,
) -> Any:
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx_path)), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    if fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if monitor is not None:
        config.progress_monitor = monitor
    if cache is not None:
        config.set_timing_cache(cache, ignore_mismatch=False)
    if shapes is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(profile_input, *shapes)
        config.add_optimization_profile(profile)
    return builder.build_serialized_network(network, config), config


def engine_information(trt: Any, plan: Any) -> dict[str, Any]:
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(bytes(plan))
    inspector = engine.create_engine_inspector()
    return json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def check(result: tuple[Any, ...]) -> Any:
    error, *values = result
    assert int(error) == 0, error
    return values[0] if len(values) == 1 else values


class Buffers:
    """Device and pinned host buffers per tensor, as olvf's runner allocates them: once, for the largest shape."""

    def __init__(self, cudart: Any, engine: Any, context: Any) -> None:
        self.cudart = cudart
        self.device: dict[str, int] = {}
        self.host: dict[str, tuple[int, np.ndarray]] = {}
        for name, shape, dtype in (("x", (4, 1, 4, 4), np.float32), ("y", (4, 2), np.float32)):
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            self.device[name] = check(cudart.cudaMalloc(nbytes))
            pointer = check(cudart.cudaMallocHost(nbytes))
            array = np.frombuffer((ctypes.c_byte * nbytes).from_address(pointer), dtype=dtype)
            self.host[name] = (pointer, array)
            assert context.set_tensor_address(name, self.device[name])

    def close(self) -> None:
        for name in self.device:
            check(self.cudart.cudaFree(self.device[name]))
            check(self.cudart.cudaFreeHost(self.host[name][0]))


def run_once(cudart: Any, context: Any, buffers: Buffers, stream: Any, x: np.ndarray, *, sync: bool = True) -> Any:
    h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
    d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
    host_x = buffers.host["x"][1][: x.size]
    host_x[:] = x.ravel()
    assert context.set_input_shape("x", x.shape)
    check(cudart.cudaMemcpyAsync(buffers.device["x"], host_x.ctypes.data, x.nbytes, h2d, stream))
    assert context.execute_async_v3(stream)
    shape = tuple(context.get_tensor_shape("y"))
    host_y = buffers.host["y"][1][: int(np.prod(shape))]
    check(cudart.cudaMemcpyAsync(host_y.ctypes.data, buffers.device["y"], host_y.nbytes, d2h, stream))
    if sync:
        check(cudart.cudaStreamSynchronize(stream))
    return host_y.reshape(shape)


def test_tensorrt_10_builds_fp16_from_the_fp32_graph_and_runs_it_through_device_buffers(monkeypatch, tmp_path) -> None:
    use_fake_gpu(monkeypatch, version="10.3.0", gpu="Orin", capability=(8, 7))
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    assert Path(trt.__file__).is_relative_to(FAKE_GPU_DIR) and Path(cudart.__file__).is_relative_to(FAKE_GPU_DIR)
    assert trt.__version__ == "10.3.0"
    plan, _ = build(trt, tiny_onnx(tmp_path / "tiny.onnx"), fp16_flag=True)
    assert plan is not None and plan.nbytes > 0
    with pytest.raises(TypeError):
        len(plan)  # IHostMemory is a buffer, not a sequence: bytes(plan) is the way

    props = check(cudart.cudaGetDeviceProperties(0))
    assert props.name.decode() == "Orin" and (props.major, props.minor) == (8, 7)
    check(cudart.cudaSetDevice(0))
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(bytes(plan))
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert names == ["x", "y"]
    assert (
        engine.get_tensor_mode("x") == trt.TensorIOMode.INPUT and engine.get_tensor_mode("y") == trt.TensorIOMode.OUTPUT
    )
    assert trt.nptype(engine.get_tensor_dtype("x")) is np.float32  # weak typing keeps the network's I/O types
    assert tuple(engine.get_tensor_shape("x")) == (-1, 1, 4, 4)
    assert [tuple(d) for d in engine.get_tensor_profile_shape("x", 0)] == [(1, 1, 4, 4), (2, 1, 4, 4), (4, 1, 4, 4)]

    info = engine_information(trt, plan)
    assert info["Bindings"] == ["x", "y"]
    formats = [o["Format/Datatype"] for layer in info["Layers"] for o in layer["Outputs"]]
    assert "Channel major FP16 format where channel % 8 == 0" in formats  # TensorRT 10's words for FP16 convs
    assert not any("Half" in f for f in formats)

    context = engine.create_execution_context()
    stream = check(cudart.cudaStreamCreate())
    buffers = Buffers(cudart, engine, context)
    allocations = dict(cudart._stats)
    rng = np.random.default_rng(0)
    for batch in (3, 1, 4):
        x = rng.standard_normal((batch, 1, 4, 4)).astype(np.float32)
        y = run_once(cudart, context, buffers, stream, x)
        assert y.shape == (batch, 2)
        np.testing.assert_allclose(y, reference(x), rtol=1e-2, atol=1e-2)  # FP16-rounded
    assert {k: cudart._stats[k] for k in ("malloc", "malloc_host")} == {
        k: allocations[k] for k in ("malloc", "malloc_host")
    }
    buffers.close()
    check(cudart.cudaStreamDestroy(stream))
    assert cudart._live_allocations() == 0
    assert cudart._stats["malloc"] == cudart._stats["free"] == 2


def test_results_arrive_only_when_the_stream_is_synchronised(monkeypatch, tmp_path) -> None:
    use_fake_gpu(monkeypatch)
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    plan, _ = build(trt, tiny_onnx(tmp_path / "tiny.onnx"))
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(bytes(plan))
    context = engine.create_execution_context()
    stream = check(cudart.cudaStreamCreate())
    buffers = Buffers(cudart, engine, context)
    x = np.ones((2, 1, 4, 4), np.float32)
    early = run_once(cudart, context, buffers, stream, x, sync=False).copy()
    assert np.isnan(early).all()  # uninitialised memory, as on a GPU
    check(cudart.cudaStreamSynchronize(stream))
    np.testing.assert_allclose(buffers.host["y"][1][:4].reshape(2, 2), reference(x), rtol=1e-6)
    buffers.close()


def test_tensorrt_11_has_no_fp16_flag_and_takes_precision_from_the_graph(monkeypatch, tmp_path) -> None:
    use_fake_gpu(monkeypatch, version="11.0.0")
    import tensorrt as trt

    with pytest.raises(AttributeError):
        trt.BuilderFlag.FP16  # noqa: B018
    assert not hasattr(trt.Builder(trt.Logger()), "platform_has_fast_fp16")
    fp32, _ = build(trt, tiny_onnx(tmp_path / "fp32.onnx"))  # no flags: strongly typed anyway
    fp16, _ = build(trt, tiny_onnx(tmp_path / "fp16.onnx", fp16=True), strongly_typed=True)

    def datatypes(plan: Any) -> list[str]:
        info = engine_information(trt, plan)
        assert "Bindings" not in info and [t["Name"] for t in info["I/O Tensors"]] == ["x", "y"]
        return [o["DataType"] for layer in info["Layers"] for o in layer["Outputs"]]

    assert "Half" not in datatypes(fp32)
    assert "Half" in datatypes(fp16)


def test_tensorrt_10_refuses_the_fp16_flag_on_a_strongly_typed_network(monkeypatch, tmp_path) -> None:
    use_fake_gpu(monkeypatch, version="10.7.0")
    import tensorrt as trt

    plan, _ = build(trt, tiny_onnx(tmp_path / "tiny.onnx"), fp16_flag=True, strongly_typed=True)
    assert plan is None
    assert any("strongly typed" in message for _, message in trt._log_records)


def test_kgen_layer_style_names_precisions_half_and_float(monkeypatch, tmp_path) -> None:
    use_fake_gpu(monkeypatch, layer_style="kgen")
    import tensorrt as trt

    plan, _ = build(trt, tiny_onnx(tmp_path / "tiny.onnx"), fp16_flag=True)
    formats = {o["Format/Datatype"] for layer in engine_information(trt, plan)["Layers"] for o in layer["Outputs"]}
    assert {"Half", "Float"} <= formats


def test_engines_load_only_on_the_tensorrt_version_and_compute_capability_that_built_them(
    monkeypatch, tmp_path
) -> None:
    use_fake_gpu(monkeypatch, version="10.3.0", gpu="Orin", capability=(8, 7))
    import tensorrt as trt

    plan = bytes(build(trt, tiny_onnx(tmp_path / "tiny.onnx"), fp16_flag=True)[0])

    def load(**fake: Any) -> Any:
        use_fake_gpu(monkeypatch, **fake)
        import tensorrt as trt

        return trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(plan), trt._log_records

    engine, records = load(version="10.3.0", gpu="Orin", capability=(8, 7))
    assert engine is not None and not records
    engine, records = load(version="10.3.0", gpu="Jetson AGX Orin", capability=(8, 7))
    assert engine is not None and "different models of devices" in records[-1][1]  # a warning, as TensorRT
    engine, records = load(version="10.3.0", gpu="NVIDIA GeForce RTX 4090", capability=(8, 9))
    assert engine is None and "incompatible device, expecting compute 8.9 got compute 8.7" in records[-1][1]
    engine, records = load(version="10.7.0", gpu="Orin", capability=(8, 7))
    assert engine is None and "expecting library version 10.7.0 got 10.3.0" in records[-1][1]
    engine, records = load()
    assert engine is None and trt.Runtime(trt.Logger()).deserialize_cuda_engine(b"not a plan") is None


def test_profiles_must_cover_the_dynamic_input_and_bound_the_shapes(monkeypatch, tmp_path) -> None:
    use_fake_gpu(monkeypatch)
    import tensorrt as trt

    graph = tiny_onnx(tmp_path / "tiny.onnx")
    assert build(trt, graph, shapes=None)[0] is None
    assert "no optimization profile" in trt._log_records[-1][1]
    assert build(trt, graph, profile_input="images")[0] is None
    assert "'images'" in trt._log_records[-1][1]
    profile = trt.Builder(trt.Logger(trt.Logger.ERROR)).create_optimization_profile()
    with pytest.raises(RuntimeError, match="Shape provided for opt is inconsistent"):
        profile.set_shape("x", [4, 1, 4, 4], [2, 1, 4, 4], [1, 1, 4, 4])

    plan, _ = build(trt, graph)
    context = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(bytes(plan)).create_execution_context()
    assert not context.set_input_shape("x", (5, 1, 4, 4))
    assert not context.set_input_shape("x", (2, 3, 4, 4))
    assert context.set_input_shape("x", (4, 1, 4, 4))
    assert tuple(context.get_tensor_shape("y")) == (4, 2)
    assert not context.execute_async_v3(0)  # no tensor addresses set


def test_build_reports_progress_and_grows_the_timing_cache(monkeypatch, tmp_path) -> None:
    use_fake_gpu(monkeypatch)
    import tensorrt as trt

    phases: list[tuple[str, str | None, int]] = []

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            phases.append((phase_name, parent_phase, num_steps))

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True

        def phase_finish(self, phase_name: str) -> None:
            pass

    config = trt.Builder(trt.Logger()).create_builder_config()
    cache = config.create_timing_cache(b"")
    empty = bytes(cache.serialize())
    plan, config = build(trt, tiny_onnx(tmp_path / "tiny.onnx"), cache=cache, monitor=Monitor())
    assert plan is not None
    assert [p for p in phases if p[1] is None] and all(n > 0 for _, _, n in phases)
    grown = bytes(config.get_timing_cache().serialize())
    assert grown != empty
    reloaded = config.create_timing_cache(grown)
    build(trt, tiny_onnx(tmp_path / "tiny.onnx"), cache=reloaded)
    assert bytes(reloaded.serialize()) == grown  # same build: nothing new to time

    class Forgetful(trt.IProgressMonitor):
        def __init__(self) -> None:
            pass  # no IProgressMonitor.__init__: pybind11 refuses such an object

    with pytest.raises(TypeError):
        config.progress_monitor = Forgetful()


def test_noise_shifts_every_float_output(monkeypatch, tmp_path) -> None:
    use_fake_gpu(monkeypatch, noise=0.5)
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    plan, _ = build(trt, tiny_onnx(tmp_path / "tiny.onnx"))
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(bytes(plan))
    context = engine.create_execution_context()
    stream = check(cudart.cudaStreamCreate())
    buffers = Buffers(cudart, engine, context)
    x = np.ones((1, 1, 4, 4), np.float32)
    np.testing.assert_allclose(run_once(cudart, context, buffers, stream, x), reference(x) + 0.5, rtol=1e-6)
    buffers.close()


def test_unparseable_graph_gives_one_parser_error(monkeypatch, tmp_path) -> None:
    use_fake_gpu(monkeypatch)
    import tensorrt as trt

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    logger = trt.Logger(trt.Logger.ERROR)
    parser = trt.OnnxParser(trt.Builder(logger).create_network(0), logger)
    assert not parser.parse_from_file(str(junk))
    assert parser.num_errors == 1 and "junk.onnx" in str(parser.get_error(0))


def test_a_machine_without_gpu(monkeypatch) -> None:
    use_fake_gpu(monkeypatch, count=0)
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    error, count = cudart.cudaGetDeviceCount()
    assert (error, count) == (cudart.cudaError_t.cudaErrorNoDevice, None) and int(error) == 100  # cuda-python 12.8+
    assert cudart.cudaGetDeviceProperties(0) == (cudart.cudaError_t.cudaErrorNoDevice, None)
    assert int(cudart.cudaSetDevice(0)[0]) == 100
    with pytest.raises(TypeError, match="nullptr"):
        trt.Builder(trt.Logger(trt.Logger.ERROR))
    assert "CUDA initialization failure with error: 100" in trt._log_records[-1][1]


def test_cuda_python_12_6_returns_a_value_with_an_error_and_raises_without_a_driver(monkeypatch) -> None:
    use_fake_gpu(monkeypatch, cuda_python="12.6.2", count=0)
    from cuda.bindings import runtime as cudart

    assert cudart.cudaGetDeviceCount() == (cudart.cudaError_t.cudaErrorNoDevice, 0)
    use_fake_gpu(monkeypatch, cuda_python="12.6.2", driver="missing")
    from cuda.bindings import runtime as cudart

    with pytest.raises(RuntimeError, match="Failed to dlopen libcuda.so.1"):
        cudart.cudaGetDeviceCount()
    with pytest.raises(RuntimeError, match='Function "cuInit" not found'):
        cudart.cudaSetDevice(0)


def test_tensorrt_keeps_the_first_logger_of_the_process_and_says_so(monkeypatch) -> None:
    use_fake_gpu(monkeypatch)
    import tensorrt as trt

    first = trt.Logger(trt.Logger.ERROR)
    trt.Builder(first)
    trt.Runtime(first)
    assert not trt._log_records
    trt.Runtime(trt.Logger(trt.Logger.ERROR))
    assert "differs from one already provided" in trt._log_records[-1][1]


def test_an_fp16_build_keeps_fp16_weights(monkeypatch, tmp_path) -> None:
    """A weakly typed FP16 build stores half the weight bytes; the engine still computes the graph (FP16-rounded)."""
    use_fake_gpu(monkeypatch)
    import tensorrt as trt

    rng = np.random.default_rng(1)
    weights = rng.standard_normal((256, 256)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="/mm")],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 256])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "mm.onnx"
    path.write_bytes(model.SerializeToString())
    shapes = ([1, 256], [1, 256], [2, 256])
    fp32, _ = build(trt, path, shapes=shapes)
    fp16, _ = build(trt, path, fp16_flag=True, shapes=shapes)
    assert 0.45 < fp16.nbytes / fp32.nbytes < 0.6
    assert fp32.nbytes > weights.nbytes
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(bytes(fp16))
    assert engine is not None and engine.num_io_tensors == 2


def test_an_execution_context_needs_free_gpu_memory(monkeypatch, tmp_path) -> None:
    use_fake_gpu(monkeypatch, memory=64)
    import tensorrt as trt

    plan, _ = build(trt, tiny_onnx(tmp_path / "tiny.onnx"))
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(bytes(plan))
    assert engine.device_memory_size_v2 > 64
    assert engine.create_execution_context() is None  # TensorRT's null context, as the bindings return it
    assert "out of memory" in trt._log_records[-1][1]


def test_subprocesses_see_the_fake_and_the_real_modules_come_back(monkeypatch) -> None:
    before = {name: sys.modules.get(name) for name in ("tensorrt", "cuda", "cuda.bindings", "cuda.bindings.runtime")}
    with monkeypatch.context() as patch:
        use_fake_gpu(patch, version="11.1.0", gpu="Thor", capability=(11, 0))
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import tensorrt, cuda.bindings.runtime as rt; "
                "print(tensorrt.__version__, rt.cudaGetDeviceProperties(0)[1].name.decode(), tensorrt.__file__)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out[:2] == ["11.1.0", "Thor"] and Path(out[2]).is_relative_to(FAKE_GPU_DIR)
        import tensorrt  # noqa: F401 - the fake, only for this block
    assert {name: sys.modules.get(name) for name in before} == before
