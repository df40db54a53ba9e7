"""TensorRT as one backend: device facts, engine identity, the builder and the runner, together.

Engines are built on the machine that runs them (:mod:`.builder`); work on a
bundle's set of engines (the build lock, the atomic manifest update, the
check against ONNX Runtime) is :mod:`olvf.runtime.checks.engines`. Nothing
here imports TensorRT or cuda-python until it is used.

Not run on real hardware in this project's CI (no GPU, no TensorRT): it is
tested there against a fake TensorRT and cuda-python (tests/fake_gpu), which
proves olvf's side; on real TensorRT and a GPU the conformance suite and
tests/runtime/test_tensorrt.py run it.
"""

from olvf.runtime.runners.tensorrt.device import (
    INSTALL_HINT,
    DeviceFacts,
    create_builder,
    create_runtime,
    device_facts,
    import_tensorrt,
    select_device,
    tensorrt_logger,
    tensorrt_unavailable,
)
from olvf.runtime.runners.tensorrt.gpu_access import gpu_access_problem
from olvf.runtime.runners.tensorrt.identity import check_engine, rebuild_command, same_machine
from olvf.runtime.runners.tensorrt.runner import TensorRTRunner

__all__ = [
    "INSTALL_HINT",
    "DeviceFacts",
    "TensorRTRunner",
    "check_engine",
    "create_builder",
    "create_runtime",
    "device_facts",
    "gpu_access_problem",
    "import_tensorrt",
    "rebuild_command",
    "same_machine",
    "select_device",
    "tensorrt_logger",
    "tensorrt_unavailable",
]
