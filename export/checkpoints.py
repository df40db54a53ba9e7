"""Load classifier checkpoints in the forms seen in the wild, safely.

Accepted: a plain ``state_dict``; ``{"state_dict": ...}``,
``{"model_state_dict": ...}``, ``{"model": ...}``, ``{"net": ...}`` (other
entries such as ``epoch`` or ``optimizer`` are ignored); keys prefixed
``module.`` (DataParallel) and/or ``model.``; DenseNet keys in the
pre-0.3 torchvision naming (``norm.1``). All of these load with
``torch.load(weights_only=True)``, which runs no code from the file. A whole
pickled module needs ``trust_pickle=True`` because unpickling it runs code.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from olvf.digest import sha256_file
from olvf.errors import CheckpointError
from olvf.export.architectures import Architecture, all_architectures
from olvf.runtime.bundle.manifest import CLASS_NAMES

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
_PREFIXES = ("module.", "model.")
_LEGACY_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
_SHOW = 5


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint turned into an eval-mode torchvision module."""

    path: Path
    architecture: Architecture
    module: nn.Module
    form: str
    sha256: str


def _looks_like_torch_save(path: Path) -> bool:
    """torch.save writes a zip archive (torch >= 1.6) or a raw pickle (older); nothing else is a checkpoint."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _read(path: Path, trust_pickle: bool) -> Any:
    if not _looks_like_torch_save(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (no torch.save header; a Git LFS pointer, a text or an HTML "
            "file?); fetch the real file"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust_pickle:
            raise CheckpointError(
                f"{path} holds pickled Python objects (probably a whole model saved with torch.save(model)); "
                "loading it would run code from the file. Save model.state_dict() instead, or re-run with "
                "--trust-pickle if you trust where the file came from"
            ) from None
    except Exception as exc:  # torch's safe unpickler fails in many ways on damaged files
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)}); "
            "check the file is complete and was written by torch.save"
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # arbitrary unpickling failures: missing classes, modules
        raise CheckpointError(
            f"{path}: the pickled model could not be loaded ({type(exc).__name__}: {_first_line(exc)}); "
            "load it in its training code and save model.state_dict() instead"
        ) from None


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + "..."


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Find the state dict inside whatever was saved; return it and how it was found."""
    form: list[str] = []
    for _ in range(3):
        if isinstance(obj, nn.Module):
            form.append("pickled module")
            obj = obj.state_dict()
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj), form or ["state_dict"]
        if isinstance(obj, Mapping):
            key = next((k for k in _WRAPPER_KEYS if k in obj), None)
            if key is None:
                break
            form.append(f"{{{key!r}: ...}}")
            obj = obj[key]
            continue
        break
    kind = type(obj).__name__
    keys = ""
    if isinstance(obj, Mapping):
        keys = f" with keys {', '.join(map(str, list(obj)[:_SHOW]))}" if obj else " that is empty"
    raise CheckpointError(
        f"{path}: no state dict found (a {kind}{keys}); expected a state_dict, or a dict holding one under "
        f"{', '.join(repr(k) for k in _WRAPPER_KEYS)}"
    )


def _normalise_keys(state: dict[str, torch.Tensor], form: list[str]) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                form.append(f"{prefix!r} prefix")
                changed = True
    if any(_LEGACY_DENSENET.match(k) for k in state):
        state = {_LEGACY_DENSENET.sub(lambda m: m.group(1) + m.group(2), k): v for k, v in state.items()}
        form.append("legacy DenseNet key names")
    return state


def _reference_shapes(arch: Architecture, num_classes: int) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = arch.build(num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _mismatches(
    state: Mapping[str, torch.Tensor], reference: Mapping[str, tuple[int, ...]]
) -> tuple[list[str], list[str], list[str]]:
    # BatchNorm counters are absent from checkpoints written by old torch versions; harmless.
    missing = [k for k in reference if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in reference]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} (expected {reference[k]})"
        for k in reference
        if k in state and tuple(state[k].shape) != reference[k]
    ]
    return missing, unexpected, wrong_shape


def _guess_architecture(state: Mapping[str, torch.Tensor], num_classes: int) -> Architecture | None:
    for arch in all_architectures():
        reference = _reference_shapes(arch, num_classes)
        missing, unexpected, wrong = _mismatches(state, reference)
        head = f"{arch.head}.weight"
        wrong = [w for w in wrong if not w.startswith(head) and not w.startswith(f"{arch.head}.bias")]
        if not missing and not unexpected and not wrong:
            return arch
    return None


def load_classifier(
    path: str | Path, arch: Architecture, *, trust_pickle: bool = False, num_classes: int = len(CLASS_NAMES)
) -> LoadedCheckpoint:
    """Load ``path`` as ``arch`` with a ``num_classes`` head, or say exactly why not."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty")
    state, form = _unwrap(_read(path, trust_pickle), path)
    state = _normalise_keys(state, form)

    reference = _reference_shapes(arch, num_classes)
    missing, unexpected, wrong_shape = _mismatches(state, reference)
    if missing or unexpected or wrong_shape:
        head_weight = state.get(f"{arch.head}.weight")
        only_head = (
            not missing
            and not unexpected
            and all(w.startswith(f"{arch.head}.") for w in wrong_shape)
            and head_weight is not None
        )
        if only_head:
            assert head_weight is not None  # only_head requires it
            raise CheckpointError(
                f"{path}: head {arch.head}.weight has {head_weight.shape[0]} outputs, olvf needs {num_classes}"
                + (f" ({', '.join(CLASS_NAMES)})" if num_classes == len(CLASS_NAMES) else "")
                + "; is this the ImageNet backbone rather than the fine-tuned model?"
            )
        actual = _guess_architecture(state, num_classes)
        if actual is not None and actual.name != arch.name:
            raise CheckpointError(f"{path} is a {actual.name} checkpoint, not {arch.name}; pass it as --{actual.flag}")
        details = []
        if missing:
            details.append(f"missing keys {', '.join(missing[:_SHOW])}" + (" ..." if len(missing) > _SHOW else ""))
        if unexpected:
            details.append(
                f"unexpected keys {', '.join(unexpected[:_SHOW])}" + (" ..." if len(unexpected) > _SHOW else "")
            )
        if wrong_shape:
            details.append(f"wrong shapes {', '.join(wrong_shape[:3])}" + (" ..." if len(wrong_shape) > 3 else ""))
        raise CheckpointError(f"{path} does not fit torchvision {arch.name}: {'; '.join(details)}")

    floating = [k for k, v in state.items() if k in reference and v.is_floating_point() and not torch.isfinite(v).all()]
    if floating:
        raise CheckpointError(
            f"{path}: weights hold NaN or infinite values (first: {floating[0]}); the training diverged"
        )

    model = arch.build(num_classes)
    model.load_state_dict(state, strict=False)  # strictness checked above, num_batches_tracked may be absent
    model.eval()
    return LoadedCheckpoint(path=path, architecture=arch, module=model, form=", ".join(form), sha256=sha256_file(path))
