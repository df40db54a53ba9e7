"""``load_classifier``: every checkpoint form seen in the wild loads, every bad one is named.

A checkpoint that loads must give an eval-mode torchvision module whose
weights are bit-for-bit the saved ones and whose output on a fixed input is
the reference model's. A checkpoint that does not load must raise a one-line
``CheckpointError`` naming the file and saying how to fix it.

The reference models are built once per module (seeded, with non-default
BatchNorm statistics so that running buffers and eval mode both show in the
output) and every test saves a variant of their state dict under ``tmp_path``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from torch import nn  # noqa: E402

from olvf.errors import CheckpointError  # noqa: E402
from olvf.export.architectures import (  # noqa: E402
    DENSENET161,
    RESNET50,
    STUDY_ENSEMBLE,
    Architecture,
)
from olvf.export.checkpoints import load_classifier  # noqa: E402

StateDict = dict[str, torch.Tensor]

NBT = "num_batches_tracked"
LEGACY_DENSENET_PART = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.(weight|bias|running_mean|running_var)$")


# --------------------------------------------------------------------------- references


@dataclass(frozen=True)
class Reference:
    arch: Architecture
    model: nn.Module
    state_dict: StateDict
    output: torch.Tensor


def _fixed_input() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1234))


def _reference(arch: Architecture, seed: int) -> Reference:
    torch.manual_seed(seed)
    model = arch.build(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                # Away from the defaults, so an unloaded buffer or train-mode BN changes the output.
                module.weight.uniform_(0.5, 1.0)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(7)
    model.eval()
    with torch.no_grad():
        output = model(_fixed_input())
    assert torch.isfinite(output).all()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Reference(arch, model, state, output)


@pytest.fixture(scope="module")
def references() -> dict[str, Reference]:
    return {arch.name: _reference(arch, seed) for seed, arch in enumerate(STUDY_ENSEMBLE)}


@pytest.fixture(scope="module")
def saved(references: dict[str, Reference], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """One plain state-dict file per architecture, for tests that only read a good file."""
    folder = tmp_path_factory.mktemp("saved")
    paths = {}
    for name, ref in references.items():
        paths[name] = folder / f"{name}.pt"
        torch.save(ref.state_dict, paths[name])
    yield paths
    for path in paths.values():
        path.unlink()


@pytest.fixture(autouse=True)
def _drop_checkpoints(tmp_path: Path) -> Iterator[None]:
    """Checkpoints are about 100 MB each; don't leave gigabytes in pytest's retained temp dirs."""
    yield
    for path in tmp_path.iterdir():
        if path.is_file():
            path.unlink()


# --------------------------------------------------------------------------- helpers


def _save(obj: Any, tmp_path: Path, name: str = "checkpoint.pt") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _prefixed(state: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    return {prefix + k: v for k, v in state.items()}


def _without_nbt(state: Mapping[str, torch.Tensor]) -> StateDict:
    return {k: v for k, v in state.items() if not k.endswith(NBT)}


def _legacy_densenet(state: Mapping[str, torch.Tensor]) -> StateDict:
    """torchvision < 0.3 naming (``norm.1`` for ``norm1``), written before ``num_batches_tracked`` existed."""
    legacy = {LEGACY_DENSENET_PART.sub(r"\1.\2.\3", k): v for k, v in _without_nbt(state).items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert "features.denseblock1.denselayer1.conv.2.weight" in legacy
    assert "features.denseblock1.denselayer1.norm1.weight" not in legacy
    return legacy


def _expect_error(path: Path, arch: Architecture, *fragments: str, **kwargs: Any) -> str:
    """Loading fails with a one-line CheckpointError naming ``path`` and holding every fragment."""
    with pytest.raises(CheckpointError) as info:
        load_classifier(path, arch, **kwargs)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def _assert_loads_as(
    path: Path, ref: Reference, *, form: tuple[str, ...], counters: bool = True, **kwargs: Any
) -> None:
    """``path`` loads as ``ref``: same weights, eval mode, same output, sensible form and sha256."""
    loaded = load_classifier(str(path), ref.arch, **kwargs)
    assert loaded.path == path
    assert loaded.architecture is ref.arch
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for fragment in form:
        assert fragment in loaded.form, f"{fragment!r} not in form {loaded.form!r}"

    model = loaded.module
    assert not any(m.training for m in model.modules()), "loaded module is not in eval mode"
    state = model.state_dict()
    assert state.keys() == ref.state_dict.keys()
    for key, expected in ref.state_dict.items():
        if key.endswith(NBT) and not counters:
            continue  # BatchNorm counters absent from the file keep their initial value
        assert torch.equal(state[key], expected), f"{key} differs from the saved weights"
    with torch.no_grad():
        torch.testing.assert_close(model(_fixed_input()), ref.output, rtol=0, atol=0)


# --------------------------------------------------------------------------- accepted forms

_OPTIMIZER = {
    "state": {0: {"momentum_buffer": torch.zeros(3)}},
    "param_groups": [{"lr": 0.1, "momentum": 0.9, "nesterov": False, "params": [0]}],
}


@dataclass(frozen=True)
class Form:
    """A way of saving ``state``, the fragments ``LoadedCheckpoint.form`` must show, and whether BN counters survive."""

    make: Callable[[StateDict], Any]
    shows: tuple[str, ...]
    counters: bool = True


_FORMS = {
    "plain-state-dict": Form(lambda sd: sd, ("state_dict",)),
    "state_dict-key": Form(lambda sd: {"state_dict": sd}, ("'state_dict'",)),
    "model_state_dict-key": Form(lambda sd: {"model_state_dict": sd}, ("'model_state_dict'",)),
    "model-key": Form(lambda sd: {"model": sd}, ("'model'",)),
    "net-key": Form(lambda sd: {"net": sd}, ("'net'",)),
    "training-dict-with-extras": Form(
        lambda sd: {"epoch": 3, "optimizer": _OPTIMIZER, "best_acc": 0.91, "state_dict": sd}, ("'state_dict'",)
    ),
    "lightning-style": Form(
        lambda sd: {
            "epoch": 12,
            "global_step": 3400,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": _prefixed(sd, "model."),
            "optimizer_states": [_OPTIMIZER],
            "lr_schedulers": [],
            "hyper_parameters": {"lr": 1e-3, "arch": "resnet50"},
        },
        ("'state_dict'", "'model.' prefix"),
    ),
    "module-prefix": Form(lambda sd: _prefixed(sd, "module."), ("'module.' prefix",)),
    "model-prefix": Form(lambda sd: _prefixed(sd, "model."), ("'model.' prefix",)),
    "module.model-prefix": Form(lambda sd: _prefixed(sd, "module.model."), ("'module.' prefix", "'model.' prefix")),
    "model.module-prefix": Form(lambda sd: _prefixed(sd, "model.module."), ("'module.' prefix", "'model.' prefix")),
    "wrapped-and-prefixed": Form(
        lambda sd: {"epoch": 3, "model_state_dict": _prefixed(sd, "module.")},
        ("'model_state_dict'", "'module.' prefix"),
    ),
    "no-num_batches_tracked": Form(_without_nbt, ("state_dict",), counters=False),
}


@pytest.mark.parametrize("form", _FORMS.values(), ids=_FORMS.keys())
def test_accepted_form_loads_the_saved_weights(form: Form, references, tmp_path):
    ref = references[RESNET50.name]
    path = _save(form.make(ref.state_dict), tmp_path)
    _assert_loads_as(path, ref, form=form.shows, counters=form.counters)


@pytest.mark.parametrize("arch", STUDY_ENSEMBLE, ids=lambda a: a.name)
def test_every_study_architecture_loads(arch, references, saved):
    _assert_loads_as(saved[arch.name], references[arch.name], form=("state_dict",))


def test_densenet_with_legacy_torchvision_key_names_loads(references, tmp_path):
    ref = references[DENSENET161.name]
    path = _save(_legacy_densenet(ref.state_dict), tmp_path)
    _assert_loads_as(path, ref, form=("legacy DenseNet",), counters=False)


def test_pre_1_6_file_format_loads(references, tmp_path):
    ref = references[RESNET50.name]
    path = tmp_path / "old-format.pth"
    torch.save(ref.state_dict, path, _use_new_zipfile_serialization=False)
    _assert_loads_as(path, ref, form=("state_dict",))


def test_custom_class_count_loads_with_matching_head(references, tmp_path):
    ref = references[RESNET50.name]
    state = dict(ref.state_dict, **{"fc.weight": torch.randn(5, 2048), "fc.bias": torch.randn(5)})
    path = _save(state, tmp_path)
    loaded = load_classifier(path, RESNET50, num_classes=5)
    assert loaded.module.fc.out_features == 5
    assert torch.equal(loaded.module.fc.weight, state["fc.weight"])
    assert not loaded.module.training


# --------------------------------------------------------------------------- pickled modules


_PICKLED = {
    "whole-module": (lambda ref: ref.model, ("pickled module",)),
    "module-under-model-key": (lambda ref: {"epoch": 3, "model": ref.model}, ("'model'", "pickled module")),
    "dataparallel-module": (lambda ref: nn.DataParallel(ref.model), ("pickled module", "'module.' prefix")),
    "state-dict-beside-argparse-namespace": (
        lambda ref: {"state_dict": ref.state_dict, "args": argparse.Namespace(lr=0.1, arch="resnet50")},
        ("'state_dict'",),
    ),
}


@pytest.mark.parametrize("make", [m for m, _ in _PICKLED.values()], ids=_PICKLED.keys())
def test_pickled_objects_are_refused_without_trust_pickle(make, references, tmp_path):
    path = _save(make(references[RESNET50.name]), tmp_path)
    _expect_error(path, RESNET50, "pickled", "--trust-pickle")


@pytest.mark.parametrize(("make", "shows"), _PICKLED.values(), ids=_PICKLED.keys())
def test_pickled_objects_load_with_trust_pickle(make, shows, references, tmp_path):
    ref = references[RESNET50.name]
    path = _save(make(ref), tmp_path)
    _assert_loads_as(path, ref, form=shows, trust_pickle=True)


def test_untrusted_pickle_runs_no_code(tmp_path):
    class Payload:
        def __reduce__(self):
            import os

            return os.mkdir, (str(marker),)

    marker = tmp_path / "payload-ran"
    path = _save({"state_dict": {"w": torch.zeros(1)}, "extra": Payload()}, tmp_path)
    _expect_error(path, RESNET50, "--trust-pickle")
    assert not marker.exists(), "loading without trust_pickle executed code from the file"


# --------------------------------------------------------------------------- wrong architecture, head, keys


_PAIRS = [(actual, given) for actual in STUDY_ENSEMBLE for given in STUDY_ENSEMBLE if actual is not given]


@pytest.mark.parametrize(("actual", "given"), _PAIRS, ids=[f"{a.name}-as-{g.name}" for a, g in _PAIRS])
def test_wrong_architecture_is_named_with_the_flag_to_use(actual, given, saved):
    _expect_error(saved[actual.name], given, f"is a {actual.name} checkpoint", f"not {given.name}", f"--{actual.flag}")


def test_legacy_densenet_given_as_resnet_is_recognised(references, tmp_path):
    path = _save(_legacy_densenet(references[DENSENET161.name].state_dict), tmp_path)
    _expect_error(path, RESNET50, "is a densenet161 checkpoint", "--densenet161")


@pytest.mark.parametrize("arch", STUDY_ENSEMBLE, ids=lambda a: a.name)
def test_imagenet_head_is_refused(arch, references, tmp_path):
    state = dict(references[arch.name].state_dict)
    in_features = state[f"{arch.head}.weight"].shape[1]
    state[f"{arch.head}.weight"] = torch.randn(1000, in_features)
    state[f"{arch.head}.bias"] = torch.randn(1000)
    path = _save(state, tmp_path)
    _expect_error(path, arch, f"{arch.head}.weight", "1000 outputs", "needs 3")


def test_head_size_follows_num_classes(saved):
    _expect_error(saved[RESNET50.name], RESNET50, "3 outputs", "needs 5", num_classes=5)


_MISSING = {
    "two-backbone-keys": ("conv1.weight", "layer3.1.bn2.running_var"),
    "head": ("fc.weight", "fc.bias"),
}


@pytest.mark.parametrize("deleted", _MISSING.values(), ids=_MISSING.keys())
def test_missing_keys_are_listed(deleted, references, tmp_path):
    state = {k: v for k, v in references[RESNET50.name].state_dict.items() if k not in deleted}
    path = _save(state, tmp_path)
    _expect_error(path, RESNET50, "resnet50", "missing keys", *deleted)


def test_unexpected_keys_are_listed(references, tmp_path):
    junk = {"aux_classifier.weight": torch.zeros(3, 8), "projector.0.bias": torch.zeros(8)}
    path = _save({**references[RESNET50.name].state_dict, **junk}, tmp_path)
    _expect_error(path, RESNET50, "resnet50", "unexpected keys", *junk)


def test_long_key_lists_stay_short(references, tmp_path):
    state = {k: v for k, v in references[RESNET50.name].state_dict.items() if not k.startswith("layer4.")}
    path = _save(state, tmp_path)
    message = _expect_error(path, RESNET50, "missing keys", "...")
    assert len(message) < len(str(path)) + 500


_NON_FINITE = {
    "nan-conv-weight": ("conv1.weight", math.nan),
    "inf-bn-running-var": ("bn1.running_var", math.inf),
    "nan-head-bias": ("fc.bias", math.nan),
}


@pytest.mark.parametrize(("key", "value"), _NON_FINITE.values(), ids=_NON_FINITE.keys())
def test_non_finite_weights_are_refused(key, value, references, tmp_path):
    state = dict(references[RESNET50.name].state_dict)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = value
    path = _save(state, tmp_path)
    _expect_error(path, RESNET50, "NaN or infinite", key)


# --------------------------------------------------------------------------- files that are not checkpoints


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.pt", RESNET50, "does not exist")


def test_directory_is_not_a_checkpoint(tmp_path):
    _expect_error(tmp_path, RESNET50, "not a file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.touch()
    _expect_error(path, RESNET50, "empty")


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip-format", "pre-1.6-format"])
@pytest.mark.parametrize("trust_pickle", [False, True], ids=["untrusted", "trusted"])
def test_truncated_file(zipfile, trust_pickle, references, tmp_path):
    full = tmp_path / "full.pt"
    torch.save(references[RESNET50.name].state_dict, full, _use_new_zipfile_serialization=zipfile)
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])
    _expect_error(full, RESNET50, "not a readable PyTorch checkpoint", "complete", trust_pickle=trust_pickle)


_TEXTS = {
    "training-log": "train loss 0.52 acc 0.81\n",
    "hparams-yaml": "hparams:\n  lr: 0.001\n",
    "git-lfs-pointer": "version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 102502400\n",
    "html-error-page": "<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n",
    "json": '{"epoch": 3, "loss": 0.5}\n',
}


@pytest.mark.parametrize("trust_pickle", [False, True], ids=["untrusted", "trusted"])
@pytest.mark.parametrize("text", _TEXTS.values(), ids=_TEXTS.keys())
def test_text_file_is_refused(text, trust_pickle, tmp_path):
    path = tmp_path / "model.pt"
    path.write_text(text)
    _expect_error(path, RESNET50, trust_pickle=trust_pickle)


@pytest.mark.parametrize("text", _TEXTS.values(), ids=_TEXTS.keys())
def test_text_file_is_not_mistaken_for_a_pickled_model(text, tmp_path):
    path = tmp_path / "model.pt"
    path.write_text(text)
    message = _expect_error(path, RESNET50)
    assert "--trust-pickle" not in message


_NO_STATE_DICT = {
    "unrelated-dict": ({"foo": 1}, ("foo",)),
    "optimizer-only": ({"epoch": 3, "optimizer": _OPTIMIZER}, ("epoch", "optimizer")),
    "empty-dict": ({}, ()),
    "list": ([1, 2, 3], ("list",)),
    "wrapper-holding-junk": ({"state_dict": {"foo": 1}}, ()),
    "wrapper-holding-none": ({"model": None}, ()),
}


@pytest.mark.parametrize(("obj", "fragments"), _NO_STATE_DICT.values(), ids=_NO_STATE_DICT.keys())
def test_file_without_a_state_dict(obj, fragments, tmp_path):
    path = _save(obj, tmp_path)
    _expect_error(path, RESNET50, "no state dict", *fragments)
