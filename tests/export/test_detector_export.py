"""olvf-export --detector: both YOLOv5 lineages into the bundle, and the same boxes as their source."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from detector_fixtures import LEVELS, legacy_yolov5_onnx, original_yolov5_checkpoint, ultralytics_checkpoint

import olvf
from olvf.digest import sha256_file
from olvf.export.cli import main
from olvf.export.pipeline import DetectorSource, export_bundle
from olvf.runtime.steps.detection import box_iou, letterbox


def _error(err: str) -> str:
    """The one error line (progress lines may precede it); never a traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("olvf-export: error:")]
    assert len(errors) == 1, err
    return errors[0]


def _legacy_rows() -> np.ndarray:
    rows = np.zeros((100, 6), np.float32)
    rows[0] = [160, 100, 64, 32, 0.9, 1.0]  # -> original [300, 262.5, 500, 362.5] in a 1000x800 image
    rows[1] = [160, 200, 64, 32, 0.2, 1.0]  # score 0.2: below the threshold
    return rows


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic-batch", "static-batch"])
def test_original_yolov5_onnx_is_copied_and_decoded(tmp_path: Path, dynamic: bool, capsys) -> None:
    source = legacy_yolov5_onnx(tmp_path / "best.onnx", _legacy_rows(), dynamic=dynamic)
    out = tmp_path / "bundle"
    assert main(["--detector", str(source), "--detector-imgsz", "320", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    detector = manifest["detector"]
    assert detector["layout"] == "yolov5" and detector["names"] == ["vertebra"] and detector["stride"] == 32
    assert manifest["files"]["detector_fp32.onnx"] == sha256_file(source), "copied unchanged"
    (graph,) = manifest["graphs"]
    assert graph["max_batch"] == (32 if dynamic else 1)
    image = np.zeros((1000, 800), np.float32)
    with olvf.load(out) as rt:
        found = rt.detect_batch([image, image, image])
    for dets in found:
        np.testing.assert_allclose(dets.boxes, [[300, 262.5, 500, 362.5]], atol=1e-3)
        np.testing.assert_allclose(dets.scores, [0.9], rtol=1e-6)
        assert dets.levels == ("V1",)


def test_missing_metadata_asks_for_flags(tmp_path: Path, capsys) -> None:
    source = legacy_yolov5_onnx(tmp_path / "best.onnx", _legacy_rows(), names=None)
    assert main(["--detector", str(source), "--detector-imgsz", "320", "--out", str(tmp_path / "b")]) == 5
    assert "pass --detector-names" in _error(capsys.readouterr().err)
    argv = ["--detector", str(source), "--detector-imgsz", "320", "--detector-names", "vertebra"]
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0


def test_names_that_do_not_fit_the_output_are_refused(tmp_path: Path, capsys) -> None:
    source = legacy_yolov5_onnx(tmp_path / "best.onnx", _legacy_rows(), names=("a", "b", "c"))
    assert main(["--detector", str(source), "--detector-imgsz", "320", "--out", str(tmp_path / "b")]) == 5
    assert "neither (N, 4+nc, anchors)" in _error(capsys.readouterr().err)


def test_not_an_onnx_file(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "best.onnx"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    assert main(["--detector", str(bad), "--out", str(tmp_path / "b")]) == 5
    assert "not a valid ONNX model" in _error(capsys.readouterr().err)


def test_pickled_checkpoints_need_trust(tmp_path: Path, capsys) -> None:
    pt = ultralytics_checkpoint(tmp_path / "best.pt")
    assert main(["--detector", str(pt), "--out", str(tmp_path / "b")]) == 5
    assert "--trust-pickle" in _error(capsys.readouterr().err)
    assert not (tmp_path / "b").exists()


def test_original_yolov5_model_without_its_definition_is_named(tmp_path: Path, capsys) -> None:
    """Read without running it (no --trust-pickle needed); without its yaml it cannot be rebuilt."""
    pt = original_yolov5_checkpoint(tmp_path / "yolov5s_trained.pt")
    assert main(["--detector", str(pt), "--out", str(tmp_path / "b")]) == 5
    err = _error(capsys.readouterr().err)
    assert "carries no model definition" in err and "export.py" in err


@pytest.fixture(scope="module")
def pt_bundle(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ultralytics")
    pt = ultralytics_checkpoint(folder / "best.pt")
    before = sorted(p.name for p in folder.iterdir())
    home_config = Path.home() / ".config" / "Ultralytics"
    existed = home_config.exists()
    out = folder / "bundle"
    assert main(["--detector", str(pt), "--trust-pickle", "--out", str(out)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == sorted([*before, "bundle"]), "nothing beside the checkpoint"
    assert home_config.exists() == existed, "no settings file in the user's home"
    return pt, out


def test_ultralytics_checkpoint_exports_with_its_metadata(pt_bundle) -> None:
    _, out = pt_bundle
    manifest = json.loads((out / "manifest.json").read_text())
    detector = manifest["detector"]
    assert detector["layout"] == "yolov8" and tuple(detector["names"]) == LEVELS
    assert detector["input_size"] == [320, 320] and detector["stride"] == 32
    figures = manifest["parity"]["detector_fp32.onnx"]
    assert figures["raw_max_abs_diff"] < 1e-2 and figures["min_matched_iou"] > 0.99
    assert sum(e for e, _ in figures["boxes_per_image"]) > 0, "parity was checked on real boxes"


def test_ultralytics_checkpoint_gives_ultralytics_boxes(pt_bundle) -> None:
    """rt.detect keeps exactly ultralytics' NMS boxes, minus what the vertebra rules remove, and says why."""
    from ultralytics import YOLO
    from ultralytics.utils.nms import non_max_suppression

    pt, out = pt_bundle
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) / np.float32(255) for shape in ((1000, 800), (600, 900))]
    with olvf.load(out) as rt:
        ours = rt.detect_batch(images)
    network = YOLO(str(pt)).model.float().eval()
    for image, dets in zip(images, ours):
        tensor, info = letterbox(image, (320, 320))
        with torch.no_grad():
            raw = network(torch.from_numpy(tensor[None]))
        (theirs,) = non_max_suppression(raw[0] if isinstance(raw, tuple) else raw, conf_thres=0.25, iou_thres=0.45)
        theirs = theirs.numpy()
        their_boxes = info.to_original(theirs[:, :4])
        assert len(dets) > 0
        # Every box we keep is one of ultralytics' boxes: same place, class and score.
        same = (box_iou(dets.boxes, their_boxes) > 0.999) & (dets.class_ids[:, None] == theirs[None, :, 5])
        same &= np.abs(dets.scores[:, None] - theirs[None, :, 4]) < 1e-4
        assert same.any(axis=1).all()
        dropped = len(their_boxes) - len(dets)
        if dropped:
            assert dets.notes, "boxes removed by the duplicate or one-per-level rules are reported"


def test_detector_and_classifiers_in_one_bundle(tmp_path, tiny_members, tiny_options, monkeypatch) -> None:
    rows = np.zeros((100, 6), np.float32)
    for i in range(5):  # five bodies down the middle of the letterboxed image
        rows[i] = [160, 40 + 60 * i, 64, 40, 0.9, 1.0]
    source = legacy_yolov5_onnx(tmp_path / "det.onnx", rows)
    out = tmp_path / "bundle"
    export_bundle(out, tiny_members, tiny_options, detector=DetectorSource(path=source, imgsz=320), demo=True)
    images = [np.random.default_rng(i).random((1000, 800), dtype=np.float32) for i in range(3)]
    with olvf.load(out) as rt:
        calls: dict[str, list[int]] = {"ensemble": [], "detector": []}
        for role, runner in (("ensemble", rt.runner), ("detector", rt.detector)):
            original = runner.run
            monkeypatch.setattr(
                runner,
                "run",
                lambda feeds, role=role, original=original: (
                    calls[role].append(len(next(iter(feeds.values())))) or original(feeds)
                ),
            )
        studies = rt.analyse(images)
    assert calls["detector"] == [3], "one detector call for all images"
    assert calls["ensemble"] == [4, 4, 4, 3], "all 15 vertebrae in one batch, split only at the maximum of 4"
    assert [s.detections.levels for s in studies] == [("L1", "L2", "L3", "L4", "L5")] * 3
    assert all(len(s.classification) == 5 for s in studies)
    np.testing.assert_allclose(studies[0].classification.probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_nothing_to_export(tmp_path, capsys) -> None:
    assert main(["--out", str(tmp_path / "b")]) == 1
    assert "missing --resnet50" in capsys.readouterr().err


def test_ultralytics_env_is_restored(tmp_path) -> None:
    before = {k: os.environ.get(k) for k in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL")}
    pt = ultralytics_checkpoint(tmp_path / "best.pt")
    main(["--detector", str(pt), "--trust-pickle", "--out", str(tmp_path / "b")])
    assert {k: os.environ.get(k) for k in before} == before


def test_infer_reads_a_radiograph_file_and_runs_the_cascade(tmp_path, tiny_members, tiny_options) -> None:
    import cv2

    rows = np.zeros((100, 6), np.float32)
    for i in range(5):
        rows[i] = [160, 40 + 60 * i, 64, 40, 0.9, 1.0]
    source = legacy_yolov5_onnx(tmp_path / "det.onnx", rows)
    out = tmp_path / "bundle"
    export_bundle(out, tiny_members, tiny_options, detector=DetectorSource(path=source, imgsz=320), demo=True)
    image = np.random.default_rng(0).integers(0, 256, (1000, 800), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "study.png"), image)
    with olvf.load(out) as rt:
        study = rt.infer(tmp_path / "study.png")
        direct = rt.analyse([image.astype(np.float32) / 255])[0]
    assert study.radiograph.info.kind == "png" and study.detections.levels == ("L1", "L2", "L3", "L4", "L5")
    np.testing.assert_allclose(study.detections.boxes, direct.detections.boxes, atol=1e-3)
    np.testing.assert_allclose(study.classification.probabilities, direct.classification.probabilities, atol=1e-5)


def test_fp16_detector_graph_from_the_trained_demo_detector(tmp_path) -> None:
    """FP16 with its precision in the graph (what TensorRT 11 needs), gated against PyTorch FP32."""
    import onnx

    from olvf.export.demo import demo_detector_source
    from olvf.export.pipeline import ExportOptions
    from olvf.phantom import make_phantom, phantom_display

    source = demo_detector_source(tmp_path)
    out = tmp_path / "bundle"
    export_bundle(out, (), ExportOptions(precision="fp16"), detector=source, demo=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(g["role"], g["precision"]) for g in manifest["graphs"]] == [("detector", "fp32"), ("detector", "fp16")]
    half = manifest["parity"]["detector_fp16.onnx"]
    assert half["min_matched_iou"] > 0.9 and sum(e for e, _ in half["boxes_per_image"]) >= 6
    graph = onnx.load(str(out / "detector_fp16.onnx"))
    weights = [i for i in graph.graph.initializer if len(i.dims) == 4]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT

    image = phantom_display(make_phantom(4, size=(1250, 1000)))
    with olvf.load(out, precision="fp16") as rt16, olvf.load(out) as rt32:
        half_dets, full_dets = rt16.detect(image), rt32.detect(image)
    assert half_dets.levels == full_dets.levels == ("T12", "L1", "L2", "L3", "L4", "L5")
    assert (box_iou(half_dets.boxes, full_dets.boxes).diagonal() > 0.95).all()
