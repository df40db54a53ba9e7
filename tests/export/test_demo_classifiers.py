"""The committed demo classifier heads: plain tensors, the documented hash, and backbones that must be theirs.

The heads (export/demo_classifiers.pt) sit on backbones regenerated from seeds
at export time, so what they promise is checked here without exporting: the
file loads with weights_only and matches its record, a backbone rebuilt here
reproduces the logits the heads were trained with, float rounding of the
BatchNorm calibration (which another CPU may do differently) changes nothing
that matters, and a backbone that is not theirs is refused. What the demo
decides on phantoms is checked end to end in tests/test_demo_e2e.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import numpy as np
import pytest
import torch

from olvf.errors import CheckpointError
from olvf.export.architectures import RESNET50, STUDY_ENSEMBLE
from olvf.export.demo import (
    CHECK_ATOL,
    DEMO_CLASSIFIERS,
    DEMO_NOTE,
    check_crops,
    demo_classifier,
    load_demo_classifiers,
)
from olvf.phantom import make_phantom, phantom_display
from olvf.runtime.bundle.config import CropSettings, Preprocessing
from olvf.runtime.steps.crops import extract_crops
from olvf.runtime.steps.preprocess import Preprocessor

RECORD = DEMO_CLASSIFIERS.with_suffix(".md")


@pytest.fixture(scope="module")
def classifiers():
    return load_demo_classifiers()


@pytest.fixture(scope="module")
def resnet(classifiers):
    return demo_classifier(RESNET50, classifiers)


def test_committed_heads_load_with_weights_only_and_match_their_record(classifiers) -> None:
    saved = torch.load(DEMO_CLASSIFIERS, map_location="cpu", weights_only=True)
    text = RECORD.read_text(encoding="utf-8")
    documented = re.search(r"SHA-256 \| `([0-9a-f]{64})`", text)
    assert documented, f"{RECORD.name} must state the weights' SHA-256"
    assert hashlib.sha256(DEMO_CLASSIFIERS.read_bytes()).hexdigest() == documented.group(1) == classifiers.sha256
    # Heads only: a few hundred kilobytes at most, never a backbone.
    assert DEMO_CLASSIFIERS.stat().st_size < 1_000_000
    assert set(saved["models"]) == {arch.name for arch in STUDY_ENSEMBLE}
    for arch in STUDY_ENSEMBLE:
        head = classifiers.heads[arch.name]
        assert set(head.state_dict) == {f"{arch.head}.weight", f"{arch.head}.bias"}
        assert head.state_dict[f"{arch.head}.weight"].shape[0] == 3
    # The operating point the record states is the one the file carries (and the export writes).
    assert 0.0 < classifiers.fresh_threshold < 1.0
    assert f"p(fresh) >= **{classifiers.fresh_threshold}**" in text
    assert "not for diagnosis" in text and "not for diagnosis" in DEMO_NOTE


def test_rebuilt_backbone_reproduces_the_training_logits(classifiers, resnet) -> None:
    with torch.no_grad():
        logits = resnet(check_crops(classifiers))
    drift = float((logits - classifiers.heads[RESNET50.name].check_logits).abs().max())
    # Rebuilt on the machine that trained them, only run-to-run rounding separates the two.
    assert drift < CHECK_ATOL / 10, drift


def _phantom_batch(classifiers) -> torch.Tensor:
    phantom = make_phantom(9, {"L1": "fresh", "L3": "old"}, (1600, 1300))
    crops = extract_crops(phantom_display(phantom), np.array([v.box for v in phantom.levels], float), CropSettings())
    spec = Preprocessing(classifiers.input_size, classifiers.mean, classifiers.std, classifiers.interpolation)
    return torch.from_numpy(Preprocessor(spec)(crops))


def test_calibration_rounding_changes_no_decision(classifiers, resnet) -> None:
    """Another CPU may round the BatchNorm calibration differently: 100x float32 rounding must not matter."""
    batch = torch.cat([check_crops(classifiers), _phantom_batch(classifiers)])
    with torch.no_grad():
        before = resnet(batch)
    model = demo_classifier(RESNET50, classifiers)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                for stats in (module.running_mean, module.running_var):
                    stats.mul_(1 + 1e-5 * torch.randn(stats.shape, generator=generator))
        after = model(batch)
    assert float((after - before).abs().max()) < CHECK_ATOL / 10
    assert torch.equal(after.argmax(1), before.argmax(1))
    np.testing.assert_allclose(after.softmax(1).numpy(), before.softmax(1).numpy(), atol=1e-3)


def test_a_backbone_that_is_not_theirs_is_refused(classifiers) -> None:
    heads = dict(classifiers.heads)
    heads[RESNET50.name] = dataclasses.replace(heads[RESNET50.name], seed=heads[RESNET50.name].seed + 7)
    with pytest.raises(CheckpointError, match="is not the one its demo head was trained on"):
        demo_classifier(RESNET50, dataclasses.replace(classifiers, heads=heads))


def test_missing_or_foreign_file_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="missing from this installation; reinstall olvf"):
        load_demo_classifiers(tmp_path / "demo_classifiers.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="is not a readable demo classifier file"):
        load_demo_classifiers(garbage)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="is not an olvf demo classifier file"):
        load_demo_classifiers(other)
