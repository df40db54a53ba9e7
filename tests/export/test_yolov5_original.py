"""Checkpoints of the original ultralytics/yolov5 repository: read without running code, rebuilt, exported.

The checkpoints are written by the tests (``tests/yolov5_fixtures.py``) with
classes of a test-only ``models`` package; olvf never imports it. The
fixture's forward is a second implementation of the architecture, so the
rebuilt network is compared with it, in float64 (where two correct
implementations agree to rounding) and in float32.
"""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from yolov5_fixtures import (
    KIND,
    KINDS,
    Kind,
    definition,
    hostile_checkpoint,
    reference_forward,
    replace_pickle,
    write_checkpoint,
)

import olvf
from olvf.errors import CheckpointError
from olvf.export.cli import main
from olvf.export.detector import sample_inputs
from olvf.export.safe_pickle import Inert, RefusedGlobal, load_checkpoint
from olvf.export.yolov5_original import read_original_yolov5
from olvf.runtime.steps.detection import box_iou, letterbox


def _error(err: str) -> str:
    """The one error line (progress lines may precede it); never a traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("olvf-export: error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("yolov5-original")
    return {kind.name: write_checkpoint(folder / f"{kind.name}.pt", kind) for kind in KINDS}


# ----------------------------------------------------------------------------- the rebuild


@pytest.mark.parametrize("name", [k.name for k in KINDS])
def test_rebuilt_network_matches_the_independent_forward(written, name: str) -> None:
    fixture = written[name]
    kind = fixture.kind
    assert "models" not in sys.modules
    detector = read_original_yolov5(fixture.path)
    assert "models" not in sys.modules, "the reader imported nothing of the checkpoint's"
    assert detector is not None
    assert detector.names == fixture.names
    assert detector.trained_imgsz == kind.imgsz
    assert detector.weights == ("model" if kind.stripped else "ema")
    assert detector.strides == ((8, 16) if len(kind.anchors) == 2 else (8, 16, 32))

    batch = np.concatenate([sample_inputs(kind.imgsz, None, seed=s)[0] for s in range(2)])
    # float64: two correct implementations agree to rounding. Wrong anchors (the yaml's instead of the trained
    # buffer), the non-EMA weights, a stale grid or a wrong activation would each be off by far more.
    network = detector.network.double()
    reference = fixture.reference.double()
    with torch.no_grad():
        ours64 = network(torch.from_numpy(batch).double()).numpy()
        theirs64 = reference(torch.from_numpy(batch).double()).numpy()
    network.float(), reference.float()
    assert ours64.shape == (2, sum(3 * (kind.imgsz // s) ** 2 for s in detector.strides), 5 + kind.nc)
    np.testing.assert_allclose(ours64, theirs64, rtol=1e-9, atol=1e-7)
    # (Agreement in float32 is what the export's parity gate measures, against ONNX Runtime.)


def test_what_the_file_records_is_used_not_the_defaults(written) -> None:
    """The kinds really exercise what they claim, so that the comparison above can fail."""
    old = read_original_yolov5(written["r3-focus-csp-spp-hardswish"].path)
    first = old.network.model[0]
    assert type(first.conv.act).__name__ == "Hardswish"  # release 3's Conv activation
    csp = old.network.model[2]
    assert type(csp.act).__name__ == "LeakyReLU" and csp.act.negative_slope == pytest.approx(0.1)
    assert first.conv.bn.eps == pytest.approx(1e-3)  # the repository's BatchNorm epsilon, not torch's 1e-5

    for name in ("r5-focus-c3-spp-silu", "r7-c3x-c3tr-ghost-dwconv-leaky"):
        fixture = written[name]
        detector = read_original_yolov5(fixture.path)
        configured = torch.tensor(definition(fixture.kind)["anchors"], dtype=torch.float32).view(
            len(detector.strides), -1, 2
        )
        in_pixels = detector.network.head.anchors * torch.tensor(detector.strides, dtype=torch.float32)[:, None, None]
        torch.testing.assert_close(in_pixels, configured * fixture.kind.autoanchor, rtol=2e-3, atol=0)
        assert not torch.allclose(in_pixels, configured), "autoanchor changed them: the yaml's are not the truth"


def test_cached_grids_of_release_6_1_are_not_used(written) -> None:
    """The file caches a grid without the -0.5 cell offset; reusing it would move every box by half a stride."""
    from yolov5_fixtures import fixture_models

    fixture = written["r6.1-c3-sppf-stale-grids"]
    with fixture_models():
        stale = torch.load(fixture.path, weights_only=False)["model"].model[-1].grid[0]  # our own fixture
    assert tuple(stale.shape[2:4]) == (80, 80), "cached for 640 px, not the 96 px exported"
    assert stale[0, 0, 0, 0].tolist() == [0.0, 0.0] and stale[0, 0, 0, 1].tolist() == [1.0, 0.0], "no offset"
    detector = read_original_yolov5(fixture.path)
    batch, _ = sample_inputs(96, None)
    with torch.no_grad():
        ours = detector.network(torch.from_numpy(batch)).numpy()[0]
    theirs = reference_forward(fixture, batch)[0]  # grids computed fresh, with the offset
    # Half a stride is 4 px on the first level; ours is within rounding of the fresh grid.
    np.testing.assert_allclose(ours[:, :2], theirs[:, :2], atol=0.05)


def test_hand_computed_forward_of_a_tiny_network(tmp_path) -> None:
    """One Conv (3x3, stride 2, BatchNorm, SiLU) and a one-level Detect, computed here with numpy."""
    layout = {"backbone": [[-1, 1, "Conv", [8, 3, 2]]], "head": [[[0], 1, "Detect", ["nc", "anchors"]]]}
    kind = Kind("tiny", layout, nc=2, depth=1.0, width=1.0, anchors=[[3, 5, 9, 7]], imgsz=16)
    fixture = write_checkpoint(tmp_path / "tiny.pt", kind)
    detector = read_original_yolov5(fixture.path)
    assert detector.strides == (2,)
    image = np.random.default_rng(5).random((3, 16, 16))
    with torch.no_grad():
        ours = detector.network.double()(torch.from_numpy(image[None])).numpy()[0]

    p = {k: v.double().numpy() for k, v in fixture.reference.state_dict().items()}
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1)))
    features = np.zeros((8, 8, 8))
    for y in range(8):
        for x in range(8):
            patch = padded[:, 2 * y : 2 * y + 3, 2 * x : 2 * x + 3]
            features[:, y, x] = np.tensordot(p["model.0.conv.weight"], patch, axes=3)
    mean, var = p["model.0.bn.running_mean"], p["model.0.bn.running_var"]
    gamma, beta = p["model.0.bn.weight"], p["model.0.bn.bias"]
    features = (features - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-3) * gamma[:, None, None]
    features += beta[:, None, None]
    features = features / (1 + np.exp(-features))  # SiLU
    head = np.tensordot(p["model.1.m.0.weight"][:, :, 0, 0], features, axes=1) + p["model.1.m.0.bias"][:, None, None]
    anchors_px = p["model.1.anchors"][0] * 2  # stored in units of the stride
    rows = []
    for a in range(2):
        for y in range(8):
            for x in range(8):
                s = 1 / (1 + np.exp(-head[a * 7 : (a + 1) * 7, y, x]))
                cx, cy = (2 * s[0] - 0.5 + x) * 2, (2 * s[1] - 0.5 + y) * 2
                w, h = (2 * s[2]) ** 2 * anchors_px[a, 0], (2 * s[3]) ** 2 * anchors_px[a, 1]
                rows.append([cx, cy, w, h, *s[4:]])
    np.testing.assert_allclose(anchors_px, [[3, 5], [9, 7]], rtol=1e-3)
    np.testing.assert_allclose(ours, np.array(rows), rtol=1e-9, atol=1e-9)


def test_legacy_serialization_reads_the_same(tmp_path, written) -> None:
    """torch < 1.6 wrote a sequence of pickles and raw storages instead of a zip archive."""
    fixture = written["r7-c3x-c3tr-ghost-dwconv-leaky"]
    legacy = write_checkpoint(tmp_path / "legacy.pt", fixture.kind, legacy_format=True).path
    assert legacy.read_bytes()[:2] == b"\x80\x02" and fixture.path.read_bytes()[:2] == b"PK"
    batch, _ = sample_inputs(64, None)
    with torch.no_grad():
        a = read_original_yolov5(fixture.path).network(torch.from_numpy(batch))
        b = read_original_yolov5(legacy).network(torch.from_numpy(batch))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----------------------------------------------------------------------------- export and the runtime


def _yolov5_boxes(raw: np.ndarray, conf: float, iou: float) -> np.ndarray:
    """What the repository's non_max_suppression keeps (one label per box, class-aware), via torchvision."""
    from torchvision.ops import batched_nms

    rows = torch.from_numpy(raw)
    rows = rows[rows[:, 4] > conf]
    scores_per_class = rows[:, 5:] * rows[:, 4:5]
    scores, classes = scores_per_class.max(dim=1)
    keep = scores > conf
    rows, scores, classes = rows[keep], scores[keep], classes[keep]
    boxes = torch.cat((rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2), dim=1)
    kept = batched_nms(boxes, scores, classes, iou)
    return torch.cat((boxes[kept], scores[kept, None], classes[kept, None].float()), dim=1).numpy()


# One FP16 graph (the FP16 route is the same for every kind); the others FP32 only, to keep the tests short.
EXPORTED = {
    "r3-focus-csp-spp-hardswish": "fp32",
    "r5-focus-c3-spp-silu": "fp32",
    "r6.1-c3-sppf-stale-grids": "fp32",
    "r7-c3x-c3tr-ghost-dwconv-leaky": "fp16",
}


@pytest.fixture(scope="module")
def bundles(written, tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, precision in EXPORTED.items():
        folder = tmp_path_factory.mktemp(name)
        bundle = folder / "bundle"
        checkpoint = written[name].path
        before = sorted(p.name for p in checkpoint.parent.iterdir())
        assert main(["--detector", str(checkpoint), "--precision", precision, "--out", str(bundle)]) == 0
        assert sorted(p.name for p in checkpoint.parent.iterdir()) == before, "nothing beside the checkpoint"
        out[name] = bundle
    return out


@pytest.mark.parametrize("name", list(EXPORTED))
def test_export_without_trust_pickle_records_and_checks_the_detector(bundles, written, name: str) -> None:
    fixture = written[name]
    manifest = json.loads((bundles[name] / "manifest.json").read_text())
    detector = manifest["detector"]
    assert detector["layout"] == "yolov5" and tuple(detector["names"]) == fixture.names
    assert detector["input_size"] == [fixture.kind.imgsz] * 2
    assert detector["stride"] == (16 if len(fixture.kind.anchors) == 2 else 32)
    source = detector["source"]
    assert source["format"] == "yolov5-original" and source["weights"] in ("ema", "model")
    figures = manifest["parity"]["detector_fp32.onnx"]
    assert sum(e for e, _ in figures["boxes_per_image"]) >= 20, "parity was checked on real boxes"
    assert all(e == g for e, g in figures["boxes_per_image"])
    assert figures["min_matched_iou"] > 0.99 and figures["max_score_diff"] < 1e-3
    graphs = {g["precision"]: g for g in manifest["graphs"]}
    assert graphs["fp32"]["input_shape"][0] == "N", "dynamic batch"
    if EXPORTED[name] == "fp16":
        half = manifest["parity"]["detector_fp16.onnx"]
        assert half["min_matched_iou"] >= 0.9 and sum(e for e, _ in half["boxes_per_image"]) > 0


@pytest.mark.parametrize("name", list(EXPORTED))
def test_runtime_keeps_the_boxes_the_repository_would(bundles, written, name: str) -> None:
    """Through the ONNX graph, letterbox, decode and NMS of the runtime: the boxes of the fixture's own forward."""
    fixture = written[name]
    size = fixture.kind.imgsz
    rng = np.random.default_rng(11)
    # Noise like the export's parity image (the fixture's scores were shaped on such), in 2x2 blocks at twice its
    # size so that the letterbox halves it back exactly: a random network meets smoothed noise with far weaker
    # scores than sharp noise.
    # On the display scale [0, 1], as the runtime takes gray images.
    blocks = [np.kron(rng.integers(0, 256, (size * 3 // 4, size)), np.ones((2, 2))) for _ in range(3)]
    images = [(b / 255).astype(np.float32) for b in blocks]
    with olvf.load(bundles[name]) as rt:
        found = rt.detect_batch(images)
    matched = 0
    for image, dets in zip(images, found):
        tensor, info = letterbox(image, (size, size))
        theirs = _yolov5_boxes(reference_forward(fixture, tensor[None])[0], conf=0.25, iou=0.45)
        their_boxes = info.to_original(theirs[:, :4])
        if len(dets) == 0:
            continue
        same = box_iou(dets.boxes, their_boxes) > 0.99
        same &= dets.class_ids[:, None] == theirs[None, :, 5].astype(np.int64)
        same &= np.abs(dets.scores[:, None] - theirs[None, :, 4]) < 1e-3
        assert same.any(axis=1).all(), "every box the runtime keeps is one of the repository's"
        # The runtime keeps the best 20 (max_det), then drops boxes under 4 px in the original image.
        sizes = their_boxes[:20, 2:] - their_boxes[:20, :2]
        if len(dets) < (sizes >= 4).all(axis=1).sum():
            assert dets.notes, "boxes removed by the one-body-one-box rule are reported"
        matched += len(dets)
    assert matched > 0, "the check ran on real boxes"


# ----------------------------------------------------------------------------- refusals, one line each


class _Call:
    """Pickles as a call of ``func(*args)``: what a hostile checkpoint does."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _write_marker_code(marker: Path) -> str:
    return f"with open({str(marker)!r}, 'w') as marker:\n    marker.write('ran')"


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "marker"


def _payloads(marker: Path) -> dict[str, object]:
    return {
        "os.system": _Call(os.system, f"touch {marker}"),
        "builtins.exec": _Call(builtins.exec, _write_marker_code(marker)),
        "builtins.eval": _Call(builtins.eval, f"__import__('os').system('touch {marker}')"),
        "subprocess.Popen": _Call(subprocess.Popen, ["touch", str(marker)]),
        "builtins.__import__": _Call(builtins.__import__, "os"),
    }


@pytest.mark.parametrize(
    "payload", ["os.system", "builtins.exec", "builtins.eval", "subprocess.Popen", "builtins.__import__"]
)
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path, marker, capsys, payload, legacy) -> None:
    path = tmp_path / "best.pt"
    # The hostile call hides among what a real checkpoint holds.
    torch.save(
        {"epoch": 3, "opt": {"imgsz": 640}, "model": _payloads(marker)[payload]},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    out = tmp_path / "bundle"
    assert main(["--detector", str(path), "--trust-pickle", "--out", str(out)]) == 5
    err = _error(capsys.readouterr().err)
    assert "refused without running anything" in err and "asks for" in err
    assert not marker.exists() and not out.exists()


def test_the_hostile_file_really_runs_code_when_loaded_the_usual_way(tmp_path, marker) -> None:
    """So the refusal above is what keeps the marker away, not a payload that does nothing."""
    path = tmp_path / "best.pt"
    torch.save({"model": _Call(builtins.exec, _write_marker_code(marker))}, path)
    with pytest.raises(RefusedGlobal):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # runs the payload: it writes the marker, nothing else
    assert marker.read_text() == "ran"


def test_a_module_that_runs_code_on_import_is_never_imported(tmp_path, marker, monkeypatch, capsys) -> None:
    package = tmp_path / "site"
    package.mkdir()
    for name in ("olvf_evil_module", "models"):
        (package / f"{name}.py").write_text(f"{_write_marker_code(marker)}\nclass Model: pass\n")
    monkeypatch.syspath_prepend(str(package))
    for module in ("olvf_evil_module", "models"):
        # GLOBAL olvf_evil_module.Model / models.Model, then an empty NEWOBJ: the usual unpickler imports both.
        raw = b"\x80\x02}X\x05\x00\x00\x00modelc" + module.encode() + b"\nModel\n)\x81s."
        path = hostile_checkpoint(tmp_path / f"{module}.pt", raw)
        code = main(["--detector", str(path), "--trust-pickle", "--out", str(tmp_path / "bundle")])
        assert code == 5
        _error(capsys.readouterr().err)
        assert module not in sys.modules
    assert not marker.exists()


def test_a_dotted_name_is_refused(tmp_path) -> None:
    """Protocol 4 names like ``Model.__init__.__globals__`` reach attributes; they are never resolved."""
    raw = b"\x80\x02cmodels.yolo\nModel.__init__\n."
    with pytest.raises(RefusedGlobal):
        load_checkpoint(hostile_checkpoint(tmp_path / "best.pt", raw))


def test_a_tensor_reaching_outside_its_storage_is_refused(tmp_path) -> None:
    path = tmp_path / "best.pt"
    torch.save({"model": torch.zeros(4)}, path)
    import zipfile

    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    # The tensor's size (4,) becomes (400,): more elements than its storage holds.
    patched = data.replace(b"K\x04\x85", b"M\x90\x01\x85", 1)
    assert patched != data
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(replace_pickle(path, patched))


def test_stand_ins_run_nothing() -> None:
    stand_in = type("Model", (Inert,), {"origin": "models.yolo.Model"})
    made = stand_in("anything", key=1)
    made.__setstate__({"yaml": {"nc": 1}})
    assert made.args == ("anything",) and made.attrs == {"yaml": {"nc": 1}} and made.class_name == "Model"


def test_not_a_checkpoint(tmp_path, capsys) -> None:
    path = tmp_path / "best.pt"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 14000000\n")
    assert main(["--detector", str(path), "--out", str(tmp_path / "b")]) == 5
    assert "not a PyTorch checkpoint" in _error(capsys.readouterr().err)


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_checkpoint(tmp_path, written, capsys, cut: float) -> None:
    raw = written["r7-c3x-c3tr-ghost-dwconv-leaky"].path.read_bytes()
    path = tmp_path / "best.pt"
    path.write_bytes(raw[: int(len(raw) * cut)])
    assert main(["--detector", str(path), "--out", str(tmp_path / "b")]) == 5
    assert "damaged or truncated" in _error(capsys.readouterr().err)


def test_damaged_storage_fails_its_checksum(tmp_path, written, capsys) -> None:
    import zipfile

    source = written["r7-c3x-c3tr-ghost-dwconv-leaky"].path
    with zipfile.ZipFile(source) as archive:
        records = [archive.read(n) for n in archive.namelist() if "/data/" in n]
    raw = bytearray(source.read_bytes())
    weights = max(records, key=len)
    at = raw.find(weights) + len(weights) // 2  # stored as they are: the record's bytes appear in the file
    raw[at] ^= 0xFF
    path = tmp_path / "best.pt"
    path.write_bytes(bytes(raw))
    assert main(["--detector", str(path), "--out", str(tmp_path / "b")]) == 5
    assert "damaged or truncated (Bad CRC-32" in _error(capsys.readouterr().err)


def test_segmentation_model_is_named(tmp_path, capsys) -> None:
    layout = {
        "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]],
        "head": [[[2], 1, "Segment", ["nc", "anchors", 8, 16]]],
    }
    kind = Kind(
        "segment", layout, nc=1, depth=1.0, width=0.25, anchors=[[10, 13, 16, 30]], model_class="SegmentationModel"
    )
    path = _write_without_shaping(tmp_path / "seg.pt", kind)
    assert main(["--detector", str(path), "--out", str(tmp_path / "b")]) == 5
    assert "segmentation model (Segment head)" in _error(capsys.readouterr().err)


def test_classification_model_is_named(tmp_path, capsys) -> None:
    from yolov5_fixtures import fixture_models

    with fixture_models() as (yolo, _common):
        torch.save({"model": yolo.ClassificationModel().half(), "epoch": 9}, tmp_path / "cls.pt")
    assert main(["--detector", str(tmp_path / "cls.pt"), "--out", str(tmp_path / "b")]) == 5
    assert "classification model" in _error(capsys.readouterr().err)


def test_unknown_module_is_named(tmp_path, capsys) -> None:
    def rename(model) -> None:
        model.yaml["backbone"][1][2] = "MixConv2d"

    write_checkpoint(tmp_path / "mix.pt", KIND["r7-c3x-c3tr-ghost-dwconv-leaky"], mutate=rename)
    assert main(["--detector", str(tmp_path / "mix.pt"), "--out", str(tmp_path / "b")]) == 5
    err = _error(capsys.readouterr().err)
    assert "layer 1 is a MixConv2d, which olvf cannot rebuild" in err and "C3x" in err


def test_unknown_activation_is_named(tmp_path, capsys) -> None:
    def swap(model) -> None:
        model.model[0].act = torch.nn.GELU()

    write_checkpoint(tmp_path / "gelu.pt", KIND["r7-c3x-c3tr-ghost-dwconv-leaky"], mutate=swap)
    assert main(["--detector", str(tmp_path / "gelu.pt"), "--out", str(tmp_path / "b")]) == 5
    assert "model.0.act is a torch.nn.modules.activation.GELU activation" in _error(capsys.readouterr().err)


def test_weights_that_do_not_fit_the_definition(tmp_path, capsys) -> None:
    def widen(model) -> None:
        model.yaml["width_multiple"] = 0.25  # the recorded definition no longer describes the weights

    write_checkpoint(tmp_path / "w.pt", KIND["r7-c3x-c3tr-ghost-dwconv-leaky"], mutate=widen)
    assert main(["--detector", str(tmp_path / "w.pt"), "--out", str(tmp_path / "b")]) == 5
    assert "weights do not fit the model its yaml describes: wrong shapes model.0.conv.weight" in _error(
        capsys.readouterr().err
    )


def test_image_size_must_be_a_multiple_of_the_stride(tmp_path, written, capsys) -> None:
    path = written["r3-focus-csp-spp-hardswish"].path
    assert main(["--detector", str(path), "--detector-imgsz", "80", "--out", str(tmp_path / "b")]) == 5
    assert "not a multiple of the detector's stride 32" in _error(capsys.readouterr().err)


def _write_without_shaping(path: Path, kind: Kind) -> Path:
    from yolov5_fixtures import fixture_models

    with fixture_models() as (yolo, _common):
        model = getattr(yolo, kind.model_class)(definition(kind))
        torch.save({"model": model.half(), "ema": None, "epoch": -1}, path)
    return path


def _set_layer(index: int, entry: list) -> object:
    def mutate(model) -> None:
        layers = model.yaml["backbone"] + model.yaml["head"]
        layers[index][:] = entry

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set_layer(15, [[11, 99], 1, "Detect", ["nc", "anchors"]]), "layer 15 (Detect"),
        (_set_layer(2, [-1, "three", "C3Ghost", [128]]), "layer 2 of its definition is not [from, number"),
        # Stride 1 instead of 2: the same weights, but a 5x5 map to concatenate with an 8x8 one.
        (_set_layer(9, [-1, 1, "DWConvTranspose2d", [256, 2, 1]]), "the network its definition describes does not run"),
        (lambda model: model.yaml.pop("head"), "carries no model definition"),
    ],
    ids=["missing-source", "bad-repeats", "sizes-do-not-fit", "no-head"],
)
def test_a_definition_that_does_not_hold_together_is_named(tmp_path, capsys, mutate, expected) -> None:
    write_checkpoint(tmp_path / "odd.pt", KIND["r7-c3x-c3tr-ghost-dwconv-leaky"], mutate=mutate)
    assert main(["--detector", str(tmp_path / "odd.pt"), "--out", str(tmp_path / "b")]) == 5
    assert expected in _error(capsys.readouterr().err)


def test_a_module_tree_that_contains_itself_is_walked_once(tmp_path, written) -> None:
    from yolov5_fixtures import fixture_models

    fixture = written["r7-c3x-c3tr-ghost-dwconv-leaky"]
    path = tmp_path / "loop.pt"
    with fixture_models():
        checkpoint = torch.load(fixture.path, weights_only=False)  # our own fixture
        checkpoint["ema"].model[0]._modules["loop"] = checkpoint["ema"].model  # a cycle in the module tree
        torch.save(checkpoint, path)
    batch, _ = sample_inputs(64, None)
    with torch.no_grad():
        ours = read_original_yolov5(path).network(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(ours, reference_forward(fixture, batch), rtol=1e-5, atol=1e-4)


def test_flags_that_contradict_the_checkpoint_are_refused(tmp_path, written, capsys) -> None:
    path = written["r3-focus-csp-spp-hardswish"].path
    assert main(["--detector", str(path), "--detector-stride", "16", "--out", str(tmp_path / "b")]) == 5
    assert "--detector-stride 16 does not match" in _error(capsys.readouterr().err)
    assert main(["--detector", str(path), "--detector-names", "a,b", "--out", str(tmp_path / "b")]) == 5
    assert "--detector-names gives 2 classes but the checkpoint's head has 1" in _error(capsys.readouterr().err)
