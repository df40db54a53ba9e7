"""JSON as every olvf writer writes it: numbers only where a number was measured.

A figure that could not be measured is ``null`` (``None``) with its reason
beside it, never NaN or infinity: Python's ``json`` would write those as bare
``NaN``/``Infinity``, which no strict JSON reader (a PACS integration, ``jq``,
a browser) accepts, and a NaN compares false with every limit, so a gate that
reads one passes it. :func:`dumps` is the one way olvf turns data into JSON
text; it refuses a non-finite number and names where it sits, so a bug shows
as that bug and not as a half-written manifest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any


def non_finite(data: Any, path: str = "$") -> Iterator[str]:
    """Where ``data`` holds a NaN or an infinity, as JSON paths (``$.figures.speedup``)."""
    if isinstance(data, float):  # numpy's float64 is a float subclass too
        if not math.isfinite(data):
            yield path
    elif isinstance(data, Mapping):
        for key, value in data.items():
            yield from non_finite(value, f"{path}.{key}")
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            yield from non_finite(value, f"{path}[{i}]")
    elif hasattr(data, "dtype") and getattr(data.dtype, "kind", "") == "f":  # a numpy scalar or array
        import numpy as np

        if not np.all(np.isfinite(data)):
            yield path


def dumps(data: Any, **options: Any) -> str:
    """``json.dumps(data, **options)`` that refuses NaN and infinity with the path of the first one.

    ValueError: olvf's writers put ``None`` where a figure is not measurable; a
    non-finite number reaching one is a bug in olvf, reported as such.
    """
    bad = list(non_finite(data))
    if bad:
        raise ValueError(f"not a finite number at {', '.join(bad[:5])}: olvf writes null for what it could not measure")
    return json.dumps(data, allow_nan=False, **options)
