"""olvf: a fracture-screening model cascade packaged for the edge.

    import olvf
    with olvf.load("engines/") as rt:       # backend "auto", as olvf-infer
        study = rt.infer("radiograph.dcm")

Importing olvf never imports torch, TensorRT or ultralytics.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from olvf.errors import (
    BackendError,
    BundleError,
    CheckpointError,
    InputError,
    OlvfError,
    OutputExistsError,
    ParityError,
    UsageError,
)

__version__ = "0.1.0"

# The one side effect of importing olvf, and on purpose: ONNX Runtime (1.2x and later) writes a
# telemetry device id under ~/.cache/Microsoft unless this is set before it is first imported, and
# olvf writes nothing outside the paths its user gives. setdefault leaves a user's own choice alone.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

if TYPE_CHECKING:
    from olvf.runtime.study.runtime import Runtime

__all__ = [
    "BackendError",
    "BundleError",
    "CheckpointError",
    "InputError",
    "OlvfError",
    "OutputExistsError",
    "ParityError",
    "UsageError",
    "__version__",
    "load",
]


def load(bundle_dir: Any, backend: str = "auto", **options: Any) -> Runtime:
    """Open a model bundle for inference; see :func:`olvf.runtime.study.runtime.load`."""
    from olvf.runtime.study.runtime import load as _load

    return _load(bundle_dir, backend=backend, **options)
