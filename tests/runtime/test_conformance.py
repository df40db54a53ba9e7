"""One conformance suite over every backend present; skips name what is missing.

Each backend runs the same tiny bundle and must give the same answers as the
PyTorch reference, handle empty and oversized batches, leave inputs alone and
refuse malformed ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_gpu_fixture import real_tensorrt_missing, use_fake_gpu

import olvf
from olvf.errors import BackendError, InputError
from olvf.export.architectures import get as get_architecture
from olvf.export.demo import demo_model
from olvf.export.gradcam_reference import autograd_grad_cam
from olvf.runtime import runners
from olvf.runtime.checks.engines import build_bundle_engines


def _ort_has(provider: str) -> bool:
    import onnxruntime

    return provider in onnxruntime.get_available_providers()


def _openvino_missing() -> str | None:
    try:
        from olvf.runtime.runners.openvino import import_openvino

        import_openvino()
    except ImportError:
        return "needs OpenVINO: pip install 'olvf[openvino]'"
    return None


def _bf16_missing() -> str | None:
    missing = _openvino_missing()
    if missing:
        return missing
    from olvf.runtime.runners.openvino import bf16_unavailable, import_openvino

    return bf16_unavailable(import_openvino().Core())


TENSORRT_MISSING = real_tensorrt_missing()
OPENVINO_MISSING = _openvino_missing()
BF16_MISSING = _bf16_missing()
BACKENDS = [
    pytest.param(("onnxruntime", "fp32", {}), id="onnxruntime-cpu-fp32"),
    pytest.param(("onnxruntime", "fp16", {}), id="onnxruntime-cpu-fp16"),
    pytest.param(("torch", "fp32", {}), id="torch-fp32"),
    pytest.param(
        ("openvino", "fp32", {}),
        id="openvino-fp32",
        marks=pytest.mark.skipif(OPENVINO_MISSING is not None, reason=str(OPENVINO_MISSING)),
    ),
    # BF16 numerics exist only where the CPU computes BF16: on a CPU without it olvf refuses BF16 (with a fake CPU kind
    # claiming it, OpenVINO compiles FP32 and the runner refuses that too); test_openvino runs both sides on every CPU.
    *(
        [pytest.param(("openvino", "bf16", {}), id="openvino-bf16")]
        if OPENVINO_MISSING is None and BF16_MISSING is None
        else []
    ),
    pytest.param(
        ("openvino", "int8", {}),
        id="openvino-int8",
        marks=pytest.mark.skipif(OPENVINO_MISSING is not None, reason=str(OPENVINO_MISSING)),
    ),
    pytest.param(
        ("onnxruntime", "fp16", {"device": "cuda"}),
        id="onnxruntime-cuda-fp16",
        marks=pytest.mark.skipif(not _ort_has("CUDAExecutionProvider"), reason="needs onnxruntime-gpu and a GPU"),
    ),
    pytest.param(
        ("tensorrt", "fp16", {}),
        id="tensorrt",
        marks=pytest.mark.skipif(TENSORRT_MISSING is not None, reason=f"needs TensorRT: {TENSORRT_MISSING}"),
    ),
    # olvf's engine building and TensorRT runner against the fake TensorRT / cuda-python (tests/fake_gpu):
    # proves olvf's buffers, shapes and splitting, not TensorRT.
    pytest.param(("tensorrt", "fp16", {"fake": True}), id="tensorrt-fake"),
]
# BF16 keeps 8 bits of mantissa; INT8 quantises every backbone activation to 256 levels and is judged by
# decisions on a labelled set, not by equality (olvf.runtime.checks.routes): these bound gross errors only.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 3e-2, "int8": 0.1}
CAM_TOLERANCE = {"fp32": 1e-3, "fp16": 0.1, "bf16": 0.15}


@pytest.fixture(scope="module", params=BACKENDS)
def rt(request, tiny_bundle: Path, tmp_path_factory):
    backend, precision, options = request.param
    if precision == "int8":
        with olvf.load(request.getfixturevalue("tiny_int8_bundle"), backend=backend, precision=precision) as runtime:
            yield runtime
        return
    if backend != "tensorrt":
        with olvf.load(tiny_bundle, backend=backend, precision=precision, **options) as runtime:
            yield runtime
        return
    # Engines are built on the machine that runs them: into a copy of the tiny bundle.
    bundle = tmp_path_factory.mktemp("tensorrt") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    with pytest.MonkeyPatch.context() as patch:
        if options.get("fake"):
            use_fake_gpu(patch)
        build_bundle_engines(bundle)
        with olvf.load(bundle, backend="tensorrt") as runtime:
            yield runtime


@pytest.fixture(scope="module")
def reference(tiny_bundle: Path):
    with olvf.load(tiny_bundle, backend="torch") as runtime:
        yield runtime


@pytest.fixture(scope="module")
def batch(tiny_bundle: Path) -> np.ndarray:
    from olvf.export.parity import parity_crops

    return parity_crops((64, 64), count=6, seed=77)


def test_outputs_are_well_formed(rt, batch: np.ndarray) -> None:
    result = rt.classify(batch)
    n = len(batch)
    # TensorRT 10's FP16 flag may run the softmax itself in FP16: its sums are held to FP16 rounding.
    exact = 1e-5 if rt.backend != "tensorrt" else 1e-3
    assert result.probabilities.shape == (n, 3) and result.probabilities.dtype == np.float32
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=exact)
    assert set(result.model_probabilities) == set(rt.manifest.model_names)
    for probs in result.model_probabilities.values():
        assert probs.shape == (n, 3)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=exact)
    ensemble = np.mean(list(result.model_probabilities.values()), axis=0)
    np.testing.assert_allclose(result.probabilities, ensemble, atol=exact)
    for cams in [*result.cams.values(), result.cam]:
        assert cams.shape == (n, 64, 64) and cams.dtype == np.float32
        assert cams.min() >= 0.0 and cams.max() <= 1.0
        for cam in cams:
            assert cam.max() == pytest.approx(1.0, abs=1e-6) or cam.max() == 0.0
    assert result.labels == [rt.classes[i] for i in result.probabilities.argmax(axis=1)]
    assert (result.target == result.predictions).all()


def test_agrees_with_the_pytorch_reference(rt, reference, batch: np.ndarray) -> None:
    ours, theirs = rt.classify(batch), reference.classify(batch)
    tolerance = TOLERANCE[rt.precision]
    np.testing.assert_allclose(ours.probabilities, theirs.probabilities, atol=tolerance)
    for name in rt.manifest.model_names:
        np.testing.assert_allclose(ours.model_probabilities[name], theirs.model_probabilities[name], atol=tolerance)


def test_grad_cam_equals_autograd_for_any_target(rt, batch: np.ndarray) -> None:
    # FP16 is held to the export gate's rule (predicted class only): for a class
    # with almost no evidence, min-max normalisation magnifies FP16 rounding.
    if rt.precision == "int8":
        pytest.skip("INT8 maps are held to correlation on phantom studies (test_routes), not to equality")
    targets = ("fresh", 0) if rt.precision == "fp32" else (None,)
    for target in targets:
        result = rt.classify(batch, target=target)
        for spec in rt.manifest.models:
            arch = get_architecture(spec.architecture)
            model = demo_model(arch, spec.source["demo_seed"], spec.preprocessing.input_size)
            expected = autograd_grad_cam(arch, model, torch.from_numpy(batch), torch.from_numpy(result.target))
            atol = CAM_TOLERANCE[rt.precision]
            np.testing.assert_allclose(result.cams[spec.name], expected.numpy(), atol=atol, err_msg=spec.name)


def test_per_crop_targets(rt, batch: np.ndarray) -> None:
    targets = ["normal", "old", "fresh", 2, 1, 0]
    mixed = rt.classify(batch, target=targets)
    assert list(mixed.target) == [0, 1, 2, 2, 1, 0]
    single = rt.classify(batch[:1], target="normal")
    np.testing.assert_allclose(mixed.cam[0], single.cam[0], atol=1e-5)


def test_empty_batch_never_reaches_the_backend(rt, monkeypatch) -> None:
    def fail(_feeds):
        raise AssertionError("backend called with an empty batch")

    monkeypatch.setattr(rt.runner, "run", fail)
    result = rt.classify(np.zeros((0, 3, 64, 64), np.float32))
    assert result.probabilities.shape == (0, 3) and result.cam.shape == (0, 64, 64)
    assert all(p.shape == (0, 3) for p in result.model_probabilities.values())
    assert len(result) == 0 and result.labels == []


def test_batched_equals_one_by_one_and_input_is_untouched(rt, batch: np.ndarray) -> None:
    before = batch.copy()
    together = rt.classify(batch)
    assert np.array_equal(batch, before)
    for i in range(len(batch)):
        alone = rt.classify(batch[i : i + 1])
        np.testing.assert_allclose(alone.probabilities[0], together.probabilities[i], atol=1e-5)
        np.testing.assert_allclose(alone.cam[0], together.cam[i], atol=1e-4)


def test_batches_over_the_maximum_are_split(rt, batch: np.ndarray, monkeypatch) -> None:
    big = np.concatenate([batch, batch[:3]])  # 9 crops, the tiny bundle's maximum is 4
    calls = []
    original = rt.runner.run

    def spy(feeds):
        calls.append(len(next(iter(feeds.values()))))
        return original(feeds)

    monkeypatch.setattr(rt.runner, "run", spy)
    result = rt.classify(big)
    assert calls == [4, 4, 1]
    np.testing.assert_allclose(result.probabilities[6:], result.probabilities[:3], atol=1e-5)


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros((2, 3, 32, 32), np.float32), r"shape \(N, 3, 64, 64\)"),
        (np.zeros((3, 64, 64), np.float32), "shape"),
        (np.zeros((1, 3, 64, 64), np.uint8), "float32"),
        (np.full((1, 3, 64, 64), np.nan, np.float32), "NaN"),
    ],
    ids=["size", "rank", "dtype", "nan"],
)
def test_malformed_batches_are_refused(rt, bad: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        rt.classify(bad)


def test_bad_targets_are_refused(rt, batch: np.ndarray) -> None:
    with pytest.raises(InputError, match="unknown target class 'broken'"):
        rt.classify(batch, target="broken")
    with pytest.raises(InputError, match="out of range"):
        rt.classify(batch, target=3)
    with pytest.raises(InputError, match="2 entries for 6 crops"):
        rt.classify(batch, target=[0, 1])


def test_unknown_backend_lists_the_valid_names(tiny_bundle: Path) -> None:
    with pytest.raises(
        BackendError,
        match="unknown backend 'onnxruntim'; choose one of: onnxruntime, openvino, tensorrt, triton, torch",
    ):
        olvf.load(tiny_bundle, backend="onnxruntim")


def test_missing_backend_says_what_to_install(tiny_bundle: Path, monkeypatch) -> None:
    monkeypatch.setitem(runners._BACKENDS, "fancy", ("olvf_no_such_module", "Runner", "pip install fancy"))
    with pytest.raises(BackendError, match="not installed.*pip install fancy"):
        olvf.load(tiny_bundle, backend="fancy")


def test_gpu_provider_without_a_gpu_is_a_clear_error(tiny_bundle: Path) -> None:
    if _ort_has("CUDAExecutionProvider"):
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(BackendError, match="no CUDAExecutionProvider.*olvf\\[gpu\\]"):
        olvf.load(tiny_bundle, device="cuda")


def test_torch_backend_needs_the_original_checkpoints(exported_bundle: Path, checkpoint_files, tmp_path) -> None:
    with pytest.raises(BackendError, match="needs the original resnet50 checkpoint"):
        olvf.load(exported_bundle, backend="torch")
    other = tmp_path / "other.pt"
    torch.save(torch.load(checkpoint_files["resnet50"], weights_only=True)["state_dict"], other)
    wrong = dict(checkpoint_files, resnet50=other)
    with pytest.raises(BackendError, match="not the checkpoint this bundle was exported from"):
        olvf.load(exported_bundle, backend="torch", checkpoints=wrong)
