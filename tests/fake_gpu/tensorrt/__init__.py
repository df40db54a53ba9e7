"""A fake ``tensorrt`` for tests: NOT TensorRT, and never to be used in production.

What this is
    A test double of the part of the TensorRT 10 / 11 Python API that olvf uses, so that olvf's engine
    builder and TensorRT runner run in CI on machines without a GPU or TensorRT. The "engine" is the ONNX
    graph itself, run on CPU by ONNX Runtime; "device" memory and streams come from the fake
    ``cuda.bindings.runtime`` next to this package (``tests/fake_gpu/cuda``).

Checked against the real bindings
    ``tests/fake_gpu/surface`` records the real TensorRT Python API (PyPI's ``tensorrt-cu12-bindings``
    10.3 to 11.4, imported with stand-in libraries; ``record_surface.py``). The enums here ARE those
    records (the nearest recorded version at or below the one asked for, same major), and
    ``tests/runtime/test_fake_gpu_surface.py`` checks every class, method name, parameter name and the
    behaviour that can be observed without a GPU against them. What no record can show (what a real
    build produces) is modelled as described below and says so.

How to use it
    Put ``tests/fake_gpu`` first on ``sys.path`` (and on ``PYTHONPATH`` for subprocesses) before
    ``import tensorrt``; ``tests/fake_gpu_fixture.py``'s ``use_fake_gpu(monkeypatch, ...)`` does that and
    cleans up after the test.

Configuration (environment)
    ``OLVF_FAKE_TRT_VERSION``   ``__version__``; read at import (default "10.3.0").
    ``OLVF_FAKE_GPU_NAME`` / ``OLVF_FAKE_GPU_CC`` / ``OLVF_FAKE_GPU_COUNT`` / ``OLVF_FAKE_GPU_MEMORY``,
    ``OLVF_FAKE_CUDA_DRIVER`` / ``OLVF_FAKE_CUDA_INIT_ERROR``: the GPU, shared with the fake cuda-python.
    TensorRT cannot start CUDA where cuda-python cannot: ``trt.Builder`` / ``trt.Runtime`` then log
    TensorRT's error and raise ``TypeError: pybind11::init(): factory function returned nullptr``, as
    the real bindings do (recorded).
    ``OLVF_FAKE_TRT_CUDA_ERROR`` TensorRT's own CUDA start fails with this code although cuda-python
                                works (35: a driver older than TensorRT's CUDA needs); default 0.
    ``OLVF_FAKE_TRT_NOISE``     float added to every float output, read when ``execute_async_v3`` is
                                called (default 0): an engine that disagrees with its ONNX graph.
    ``OLVF_FAKE_TRT_LAYER_STYLE`` how engine information spells precisions, read at build.
                                TensorRT 10 (one "Format/Datatype" field): "cask" (default; "Channel
                                major FP16 format where channel % 8 == 0", "Row major linear FP32") or
                                "kgen" ("Half", "Float"): both spellings appear in NVIDIA's own reader,
                                trt-engine-explorer (trex/activations.py). TensorRT 11 (split "Format"
                                and "DataType" fields): "documented" (default; "Float" and "Row major
                                linear FP32 format (kLINEAR)" as in NVIDIA's 11.x migration guide, FP16
                                by analogy as "Half" / "... FP16 format ...") or "opaque" (spellings olvf
                                does not know: "Float16", "kHWC8"), to test the check that must not
                                depend on them.

What it models
    * logging: ``trt.Logger`` prints to stdout as "[MM/DD/YYYY-HH:MM:SS] [TRT] [W] message" (recorded);
      TensorRT keeps the first logger given to a Builder or Runtime for the whole process and says so
      (at INFO) when another one is passed later.
    * parsing: ONNX Runtime must accept the graph; otherwise ``parse_from_file`` is False with one error.
    * building: optimisation profiles are checked against the network's inputs; weak typing (TensorRT
      10, ``BuilderFlag.FP16``) marks float layers Half, keeps FP16 weights (the plan is about half the
      size of an FP32 one) and rounds inputs and outputs through float16 at run time; strongly typed
      networks take precisions from the graph; the progress monitor is called; the timing cache gains
      one entry per distinct build.
    * the plan: ``b"FAKETRT1"`` + JSON metadata + the ONNX bytes (float weights as float16 in an FP16
      build). It loads only with the same TensorRT version and compute capability (``None`` and an
      error otherwise); another GPU name with the same capability loads with a warning, as real
      TensorRT does.
    * running: an execution context holds device memory for the largest profile shapes; with too
      little free ``create_execution_context`` returns None (as the bindings do for a null context).
      ``execute_async_v3`` checks shapes and addresses, then enqueues the ONNX Runtime run on the fake
      CUDA stream; it reads inputs from and writes outputs to the fake device memory when the stream
      is synchronised.

``_log_records`` keeps every (severity, message) logged through any logger.

Modules, in the order a plan is made and run: ``_core`` (version, recorded surface, enums, configuration),
``_types``, ``_logging``, ``_onnx``, ``_network`` (networks and the parser), ``_builder``, ``_inspector`` and
``_engine`` (runtime, engines, contexts). This face hands on every name the one module had.
"""

from __future__ import annotations

from typing import Any

from tensorrt._builder import (  # noqa: F401
    Builder,
    IBuilderConfig,
    IOptimizationProfile,
    IProgressMonitor,
    ITimingCache,
    _device_identity,
    _engine_layers,
    _halve_weights,
    _layer,
    _restore_weights,
)
from tensorrt._core import (  # noqa: F401
    _ALIASES,
    _CACHE_MAGIC,
    _ENGINE_MAGIC,
    _LAYER_STYLES,
    _MAJOR,
    _NUMPY_TYPES,
    _OLVF_FAKE,
    _PRESENT_ALIASES,
    _SURFACE,
    _WEAK_TYPING_FLAGS,
    BuilderFlag,
    DataType,
    ErrorCode,
    LayerInformationFormat,
    MemoryPoolType,
    NetworkDefinitionCreationFlag,
    ProfilingVerbosity,
    TensorIOMode,
    TensorLocation,
    __version__,
    _capability,
    _cuda_start_error,
    _cudart,
    _enum,
    _gpu_count,
    _gpu_name,
    _layer_style,
    _log_records,
    _noise,
    _numeric,
    _surface,
    _TrtEnum,
    init_libnvinfer_plugins,
    nptype,
    volume,
)
from tensorrt._engine import (  # noqa: F401
    ICudaEngine,
    IExecutionContext,
    Runtime,
    _Run,
)
from tensorrt._inspector import (  # noqa: F401
    _CASK_TYPES,
    _KGEN_NAMES,
    _OPAQUE_NAMES,
    EngineInspector,
    _cask_format,
    _render_layer,
    _render_tensor,
    _trt11_format,
)
from tensorrt._logging import (  # noqa: F401
    ILogger,
    Logger,
    _global_logger,
    _log,
    _start,
)
from tensorrt._network import (  # noqa: F401
    INetworkDefinition,
    ITensor,
    OnnxParser,
    ParserError,
    _load_onnx_file,
)
from tensorrt._onnx import (  # noqa: F401
    _ONNX_ELEM_TYPES,
    _ORT_TYPES,
    _SKIPPED_OPS,
    _analyse,
    _engine_dims,
    _graphs,
    _nodes,
    _session,
    _sessions,
    _symbolic,
)
from tensorrt._types import (  # noqa: F401
    Dims,
    IHostMemory,
    _dims_tuple,
    _to_bytes,
    _Trampoline,
)


def __getattr__(name: str) -> Any:
    # Module attributes, not globals: ``trt.bool`` must not shadow the builtin bool inside this module.
    if name in _PRESENT_ALIASES:
        return DataType[_PRESENT_ALIASES[name]]
    raise AttributeError(f"module 'tensorrt' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PRESENT_ALIASES])
