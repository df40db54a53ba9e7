"""PyTorch as a backend: the reference every other backend is compared with.

A bundle holds ONNX graphs, not PyTorch weights, so this backend rebuilds the
models from the bundle's recorded sources: demo bundles from their seeds (and the committed demo heads),
others from the original checkpoints, passed as ``checkpoints={name: path}``
and verified against the sha256 recorded at export.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from olvf.errors import BackendError
from olvf.export import architectures
from olvf.export.checkpoints import load_classifier
from olvf.export.demo import rebuild_demo_model
from olvf.export.fused import INPUT_NAME, FusedEnsemble
from olvf.runtime.bundle.files import Bundle
from olvf.runtime.runners.base import Runner, TensorSpec


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, fused: FusedEnsemble, input_shape: tuple[int, int, int], threads: int | None = None) -> None:
        super().__init__()
        self.fused = fused.eval()
        self.input_shape = input_shape
        self.threads = threads

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        role: str,
        precision: str | None = None,
        **options: Any,
    ) -> TorchRunner:
        """``checkpoints``: model name -> checkpoint file (default: the demo's seeds); ``trust_pickle``: allow
        pickled code in them (see olvf.export.checkpoints); ``threads``: torch's intra-op threads."""
        checkpoints: Mapping[str, str | Path] | None = options.pop("checkpoints", None)
        trust_pickle: bool = options.pop("trust_pickle", False)
        threads: int | None = options.pop("threads", None)
        if options:
            raise BackendError(
                f"backend 'torch' takes checkpoints=, trust_pickle= and threads=, not {', '.join(sorted(options))}"
            )
        if role != "ensemble":
            raise BackendError(
                f"backend 'torch' runs the classifier ensemble only, not the {role}; "
                "olvf.load runs the detector on ONNX Runtime beside it"
            )
        manifest = bundle.manifest
        members = []
        for spec in manifest.models:
            arch = architectures.get(spec.architecture)
            if "demo_seed" in spec.source:
                model = rebuild_demo_model(arch, spec.source, spec.preprocessing.input_size)
            elif checkpoints and spec.name in checkpoints:
                loaded = load_classifier(checkpoints[spec.name], arch, trust_pickle=trust_pickle)
                if loaded.sha256 != spec.source.get("sha256"):
                    raise BackendError(
                        f"{loaded.path} is not the checkpoint this bundle was exported from "
                        f"(sha256 differs from the manifest's {spec.name} source)"
                    )
                model = loaded.module
            else:
                raise BackendError(
                    f"backend 'torch' needs the original {spec.name} checkpoint "
                    f"({spec.source.get('file', 'unknown file')}): pass checkpoints={{'{spec.name}': path, ...}}"
                )
            members.append((arch, model))
        fused = FusedEnsemble(members, precision or "fp32")
        return cls(fused, (3, *manifest.preprocessing.input_size), threads=threads)

    def load_impl(self) -> list[TensorSpec]:
        if self.threads:
            torch.set_num_threads(self.threads)
        return [TensorSpec(INPUT_NAME, (None, *self.input_shape), np.dtype(np.float32))]

    def run_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outputs = self.fused(torch.from_numpy(np.ascontiguousarray(feeds[INPUT_NAME])))
        return {name: tensor.float().numpy() for name, tensor in zip(self.fused.output_names, outputs)}


__all__ = ["TorchRunner"]
