"""The facts a latency figure is meaningless without, and the machine's own ceiling."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np


def cpu_facts() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", []
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "f16c")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "model": model,
        "flags": [f for f in wanted if f in flags],
        "logical_cpus": os.cpu_count(),
        "usable": usable,
    }


def gpu_facts() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in (
        "olvf",
        "numpy",
        "onnxruntime",
        "onnxruntime-gpu",
        "opencv-python-headless",
        "pydicom",
        "torch",
        "torchvision",
        "ultralytics-opencv-headless",
        "tensorrt",
        "openvino",
        "nncf",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def ort_gemm_gflops(size: int = 2048, repeats: int = 15, threads: int | None = None) -> float:
    """FP32 matrix product through ONNX Runtime (MLAS): the ceiling the CPU graphs run against.

    The fastest of several runs: a ceiling is what the machine can do, and on a
    shared machine the median measures the neighbours as well.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from olvf.runtime.runners.onnxruntime import default_threads

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((size, size), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gemm.onnx"
        onnx.save(model, str(path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((size, size), dtype=np.float32)
    session.run(None, {"x": x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


def torch_bf16_gflops(size: int = 2048, repeats: int = 15) -> float | None:
    """BF16 matrix product through torch, only where the CPU has native BF16 (AVX-512 BF16 or AMX)."""
    if not {"avx512_bf16", "amx_bf16"} & set(cpu_facts()["flags"]):
        return None
    try:
        import torch
    except ImportError:
        return None
    a = torch.randn(size, size, dtype=torch.bfloat16)
    b = torch.randn(size, size, dtype=torch.bfloat16)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


def _best_gops(run: Any, operations: float, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return operations / min(times) / 1e9


def openvino_gemm_gops(precision: str, size: int = 2048, repeats: int = 15, threads: int | None = None) -> float | None:
    """A matrix product through OpenVINO's CPU plugin in ``precision`` (fp32, bf16, int8): the ceiling the
    OpenVINO variants run against. None where OpenVINO is missing, or for BF16 where the CPU lacks it.

    INT8 is the pattern OpenVINO turns into an 8-bit product, as in a quantised graph: activations through a
    256-level FakeQuantize (unsigned), weights through a 255-level one (signed) into the MatMul.
    """
    try:
        from olvf.runtime.runners.openvino import bf16_unavailable, import_openvino

        ov = import_openvino()
    except ImportError:
        return None
    from openvino import opset13 as ops

    from olvf.runtime.runners.onnxruntime import default_threads

    core = ov.Core()
    if precision == "bf16" and bf16_unavailable(core) is not None:
        return None
    rng = np.random.default_rng(0)
    x = ops.parameter([size, size], ov.Type.f32, name="x")
    weights = ops.constant(rng.standard_normal((size, size), dtype=np.float32))
    if precision == "int8":

        def fq(node: Any, low: float, high: float, levels: int) -> Any:
            lo, hi = ops.constant(np.float32(low)), ops.constant(np.float32(high))
            return ops.fake_quantize(node, lo, hi, lo, hi, levels)

        product = ops.matmul(fq(x, 0.0, 4.0, 256), fq(weights, -4.0, 4.0, 255), False, False)
    else:
        product = ops.matmul(x, weights, False, False)
    model = ov.Model([product], [x], "gemm")
    hint = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[precision]
    compiled = core.compile_model(
        model,
        "CPU",
        {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads or default_threads(), "NUM_STREAMS": 1},
    )
    request = compiled.create_infer_request()
    data = np.abs(rng.standard_normal((size, size), dtype=np.float32))
    return _best_gops(lambda: request.infer({"x": data}), 2 * size**3, repeats)
