"""The one optimisation profile of every engine, shared with ONNX Runtime's TensorRT provider."""

from __future__ import annotations

from olvf.runtime.bundle.manifest import GraphSpec

# Profile "opt" shapes: what one study usually sends (one radiograph; T12-L5 or L1-L5 crops).
TYPICAL_BATCH = {"detector": 1, "ensemble": 6}


def profile_shapes(graph: GraphSpec, typical: int, max_batch: int | None = None) -> dict[str, list[int]]:
    """One optimisation profile: batch 1, a typical study, the graph's maximum (or less, if asked)."""
    tail = [int(d) for d in graph.input_shape[1:]]
    top = max(1, min(graph.max_batch, max_batch or graph.max_batch))
    opt = min(max(1, typical), top)
    return {"min": [1, *tail], "opt": [opt, *tail], "max": [top, *tail]}
