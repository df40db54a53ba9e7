"""Test double of ``cuda.bindings.utils`` (cuda-python 12.8 and later; 12.6 has no such module)."""

from __future__ import annotations

import os
from typing import Any

if tuple(int(p) for p in os.environ.get("OLVF_FAKE_CUDA_PYTHON", "12.9.10").split(".")[:2]) < (12, 8):
    raise ImportError("No module named 'cuda.bindings.utils'", name="cuda.bindings.utils")


def get_cuda_native_handle(obj: Any) -> int:
    """The raw handle of a CUDA object (a stream): what ``int(obj)`` gave before cuda-bindings 13 deprecated it."""
    return int(obj)
