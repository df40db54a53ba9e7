"""Loggers: the one TensorRT keeps for the process, and the records every test can read."""

from __future__ import annotations

import sys
import time
from typing import Any

from tensorrt._core import _cuda_start_error, _enum, _log_records
from tensorrt._types import _Trampoline

# --- logging ---------------------------------------------------------------------------------------------------


class ILogger(metaclass=_Trampoline):
    _olvf_trampoline_base = True
    Severity = _enum("ILogger.Severity")
    INTERNAL_ERROR = Severity.INTERNAL_ERROR
    ERROR = Severity.ERROR
    WARNING = Severity.WARNING
    INFO = Severity.INFO
    VERBOSE = Severity.VERBOSE

    def __init__(self) -> None:
        self.__dict__["_olvf_trt_base_initialised"] = True

    def log(self, severity: Any, msg: str) -> None:
        raise RuntimeError('Tried to call pure virtual function "ILogger::log"')


class Logger(ILogger):
    """Prints messages at or above ``min_severity`` to stdout, as "[MM/DD/YYYY-HH:MM:SS] [TRT] [W] message"."""

    def __init__(self, min_severity: Any = ILogger.Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity: Any, msg: str) -> None:
        if int(severity) <= int(self.min_severity):
            letter = {0: "F", 1: "E", 2: "W", 3: "I", 4: "V"}[int(severity)]
            stamp = time.strftime("%m/%d/%Y-%H:%M:%S")
            print(f"[{stamp}] [TRT] [{letter}] {msg}", file=sys.stdout, flush=True)


_global_logger: list[Any] = []  # the first logger any Builder or Runtime got: TensorRT keeps it for the process


def _log(logger: Any, severity: Any, message: str) -> None:
    _log_records.append((severity, message))
    target = _global_logger[0] if _global_logger else logger
    if target is not None:
        target.log(severity, message)


def _start(logger: Any, what: str) -> None:
    """What createInferBuilder / createInferRuntime do first: keep the process's logger, start CUDA."""
    if not isinstance(logger, ILogger):
        raise TypeError(f"__init__(): incompatible constructor arguments for {what}: logger must be an ILogger")
    if not _global_logger:
        _global_logger.append(logger)
    elif logger is not _global_logger[0]:
        _log(
            logger,
            ILogger.Severity.INFO,
            f"The logger passed into {what} differs from one already provided for an existing builder, runtime, "
            "or refitter. Uses of the global logger, returned by nvinfer1::getLogger(), will return the "
            "existing value.",
        )
    code = _cuda_start_error()
    if code:
        _log(
            logger,
            ILogger.Severity.ERROR,
            f"{what}: Error Code 6: API Usage Error (CUDA initialization failure with error: {code}. "
            "Please check your CUDA installation: http://docs.nvidia.com/cuda/cuda-installation-guide-linux/index.html)",
        )
        raise TypeError("pybind11::init(): factory function returned nullptr")
