"""Fused ensemble -> ONNX file, ending in the ONNX checker."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import onnx
import torch

from olvf import __version__
from olvf.errors import OlvfError
from olvf.export.fused import INPUT_NAME, FusedEnsemble


def export_onnx(fused: FusedEnsemble, path: Path, input_size: tuple[int, int], *, opset: int, max_batch: int) -> int:
    """Write ``fused`` to ``path`` with a dynamic batch axis; return the opset the file really has."""
    example = torch.zeros(2, 3, *input_size)
    batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
    chatter = io.StringIO()
    try:
        # The exporter prints progress and warnings meant for its own developers.
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                fused.eval(),
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=fused.output_names,
                dynamo=True,
                dynamic_shapes=({0: batch},),
                external_data=False,
                opset_version=opset,
                verbose=False,
            )
    except Exception as exc:  # exporter internals raise many types; the user needs one line
        raise OlvfError(
            f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            f"try another --opset (now {opset}) or report this with the torch version {torch.__version__}"
        ) from exc

    model = onnx.load(str(path))
    for key, value in {"producer": f"olvf {__version__}", "precision": fused.precision}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"olvf.{key}", value
    onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise OlvfError(f"exported graph fails the ONNX checker: {str(exc).splitlines()[0][:200]}") from None
    return max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))
