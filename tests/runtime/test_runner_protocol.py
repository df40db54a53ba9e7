"""The runner protocol: backends by name, typed, each able to say where a failure happened."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from olvf.errors import BackendError
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.runners import Runner, TensorSpec, backend_names, runner_class


def test_every_registered_backend_is_a_runner_with_from_bundle() -> None:
    for name in backend_names():
        try:
            cls = runner_class(name)
        except BackendError:
            continue  # not installed here; its own message is tested elsewhere
        assert issubclass(cls, Runner) and callable(cls.from_bundle)


def test_an_unknown_backend_lists_the_valid_names() -> None:
    with pytest.raises(
        BackendError, match="unknown backend 'tensort'; choose one of: onnxruntime, openvino, tensorrt, triton, torch"
    ):
        runner_class("tensort")


class _Exploding(Runner):
    name = "exploding"

    @classmethod
    def from_bundle(cls, bundle, role, precision=None, **options):  # type: ignore[override]
        return cls()

    def load_impl(self) -> list[TensorSpec]:
        return [TensorSpec("x", (None, 2), np.dtype(np.float32))]

    def run_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore detail")


def test_a_backend_failure_becomes_one_line_naming_the_backend() -> None:
    with _Exploding().load() as runner, pytest.raises(BackendError) as caught:
        runner.run({"x": np.zeros((1, 2), np.float32)})
    assert str(caught.value) == "exploding on cpu failed: CUDA error: an illegal memory access was encountered"


def test_the_pytorch_reference_refuses_the_detector_role(tiny_bundle: Path) -> None:
    pytest.importorskip("torch")
    with pytest.raises(BackendError, match="ensemble only, not the detector"):
        runner_class("torch").from_bundle(open_bundle(tiny_bundle), "detector")


def test_openvino_missing_is_a_backend_error_with_the_install_hint(tiny_bundle: Path, monkeypatch) -> None:
    """So auto and the benchmark pass over it with the reason instead of ending the run."""
    import sys

    import olvf

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(BackendError, match=r"OpenVINO is not installed .*pip install 'olvf\[openvino\]'"):
        olvf.load(tiny_bundle, backend="openvino", precision="fp32")
