"""Train the demo bundle's vertebra detector on phantom radiographs, reproducibly and offline.

    python export/dev/train_demo_detector.py --out export/demo_detector.pt

The demo bundle (``olvf-export --demo``) must really find the vertebrae of the
phantoms ``olvf-phantom`` draws, yet nothing trained may be downloaded. This
script makes that detector from nothing but :mod:`olvf.phantom`:

1. **Data.** Phantoms from fixed seed ranges (training and held-out
   validation, disjoint from the seeds the tests use), each with its own
   matrix size (1000-2800 rows: the same field of view at coarser or finer
   pixels) and fractures (half chosen by the seed, half one or two forced
   old/fresh fractures, so collapsed bodies are well represented). Each is
   converted exactly as the runtime converts a DICOM for the detector (the
   file's window, :func:`phantom_display`) and shrunk the way the runtime's
   letterbox shrinks it (long side to the detector's input size,
   ``INTER_LINEAR``), so training sees the pixels inference will see.
   Labels are YOLO text files, one class per level: ``T12, L1..L5``.

   T11 and S1 are drawn in every phantom but are *not* labelled: they are
   what the detector must learn to leave out (telling T12 from T11 and L5
   from S1 is the whole difficulty of naming levels), and the study
   classifies only T12-L5, so a detection of either would only feed the
   classifiers a body they were never meant to judge.

2. **Training.** An ``ultralytics`` YOLOv5u-nano (``yolov5nu.yaml``, the
   ultralytics package's heir of the study's YOLOv5) built from its yaml,
   *not* from pretrained weights, trained on CPU with a fixed seed and
   deterministic algorithms. Augmentations that would break what a level is
   are off: no mosaic (a tile of a spine has no sacrum to count from),
   little zoom; horizontal flips stay (the levels do not depend on which way
   the patient faces). ultralytics is kept offline: ``YOLO_OFFLINE``, no
   automatic installs, its settings and every output in a scratch folder, the
   font it would otherwise fetch supplied locally, and any network access
   refused and reported (a Python audit hook).

3. **Output.** No pickled code: the EMA weights' ``state_dict`` in FP16 with
   the architecture yaml, class names, input size and the recipe, loadable
   with ``torch.load(weights_only=True)``; and beside it a Markdown record
   (command, seeds, counts, epochs, time, validation figures, SHA-256).

Same machine and thread count, same file; other CPUs may round differently
and land on slightly different weights of the same quality.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from olvf.export.detector import temporary_environ
from olvf.phantom import FRACTURE_CLASSES, LEVELS, Phantom, make_phantom, phantom_display

ARCHITECTURE = "yolov5nu.yaml"
NAMES: tuple[str, ...] = LEVELS  # one class per level, T12..L5
IMGSZ = 320
TRAIN_SEED0 = 100_000  # the tests use small seeds; these ranges never meet them
VAL_SEED0 = 200_000
ROWS_RANGE = (1000, 2800)
ASPECT_RANGE = (0.75, 0.9)  # columns / rows

# Deviations from ultralytics' defaults, and why.
HYPERPARAMETERS: dict[str, Any] = {
    "optimizer": "AdamW",
    "lr0": 0.002,
    "nbs": 16,  # one optimiser step per batch: a short schedule needs every step
    "cos_lr": True,
    "warmup_epochs": 2.0,
    "mosaic": 0.0,  # a mosaic tile of a spine loses the context that names its levels
    "close_mosaic": 0,
    "scale": 0.25,  # phantoms keep one field of view; little zoom is needed
    "translate": 0.1,
    "degrees": 0.0,  # phantoms are already rotated up to about 4 degrees
    "fliplr": 0.5,
    "hsv_h": 0.0,  # gray images: hue and saturation mean nothing
    "hsv_s": 0.0,
    "hsv_v": 0.4,
}


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights, recorded in the weights file and its Markdown record."""

    train_count: int = 400
    val_count: int = 100
    epochs: int = 25
    batch: int = 8
    seed: int = 0
    # One torch thread: the same reductions in the same order on any machine, and no collapse when the two
    # cores of a CI machine are shared (two OpenMP threads beside another busy process ran eight times slower).
    threads: int = 1
    imgsz: int = IMGSZ
    architecture: str = ARCHITECTURE
    names: tuple[str, ...] = NAMES
    train_seeds: tuple[int, int] = (TRAIN_SEED0, TRAIN_SEED0 + 400)  # [start, stop)
    val_seeds: tuple[int, int] = (VAL_SEED0, VAL_SEED0 + 100)
    rows_range: tuple[int, int] = ROWS_RANGE
    aspect_range: tuple[float, float] = ASPECT_RANGE
    hyperparameters: dict[str, Any] = field(default_factory=lambda: dict(HYPERPARAMETERS))

    @classmethod
    def make(cls, train_count: int, val_count: int, epochs: int, batch: int, seed: int, threads: int) -> Recipe:
        return cls(
            train_count=train_count,
            val_count=val_count,
            epochs=epochs,
            batch=batch,
            seed=seed,
            threads=threads,
            train_seeds=(TRAIN_SEED0, TRAIN_SEED0 + train_count),
            val_seeds=(VAL_SEED0, VAL_SEED0 + val_count),
        )


# --------------------------------------------------------------------------- data


def sample_phantom(seed: int, recipe: Recipe = Recipe()) -> Phantom:
    """One training or validation phantom: matrix size and fractures drawn from ``seed``."""
    rng = np.random.default_rng([seed, 0x0D7EC7])
    lo, hi = recipe.rows_range
    rows = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
    cols = int(round(rows * rng.uniform(*recipe.aspect_range)))
    fractures: dict[str, str] | None = None  # the seed chooses (usually none)
    if rng.random() < 0.5:
        count = int(rng.integers(1, 3))
        levels = rng.choice(len(LEVELS), size=count, replace=False)
        fractures = {LEVELS[int(i)]: FRACTURE_CLASSES[int(rng.integers(2))] for i in levels}
    return make_phantom(seed, fractures, (rows, cols))


def yolo_labels(phantom: Phantom, names: Sequence[str] = NAMES) -> np.ndarray:
    """YOLO labels (class, cx, cy, w, h), coordinates normalised by the image size, one row per level."""
    rows, cols = phantom.size
    labels = []
    for vertebra in phantom.levels:
        if vertebra.level not in names:
            continue
        x1, y1, x2, y2 = vertebra.box  # x2, y2 exclusive: x2 - x1 is the width
        labels.append(
            (
                names.index(vertebra.level),
                (x1 + x2) / 2 / cols,
                (y1 + y2) / 2 / rows,
                (x2 - x1) / cols,
                (y2 - y1) / rows,
            )
        )
    return np.asarray(labels, dtype=np.float64).reshape(-1, 5)


def detector_image(phantom: Phantom, imgsz: int) -> np.ndarray:
    """The display image shrunk as the runtime's letterbox shrinks it (long side ``imgsz``), uint8."""
    display = phantom_display(phantom)
    rows, cols = display.shape
    gain = min(imgsz / rows, imgsz / cols)
    size = (int(round(cols * gain)), int(round(rows * gain)))
    small = cv2.resize(display, size, interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint(small * 255), 0, 255).astype(np.uint8)  # 8-bit PNG for ultralytics' loader


def write_example(phantom: Phantom, root: Path, split: str, imgsz: int, names: Sequence[str] = NAMES) -> Path:
    """Write one phantom as ``images/<split>/<seed>.png`` and ``labels/<split>/<seed>.txt``; returns the label."""
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(images / f"{phantom.seed}.png"), detector_image(phantom, imgsz)):
        raise OSError(f"could not write {images / f'{phantom.seed}.png'}")
    label = labels / f"{phantom.seed}.txt"
    lines = [f"{int(c)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" for c, cx, cy, w, h in yolo_labels(phantom, names)]
    label.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return label


def _write_one(job: tuple[int, str, str, Recipe]) -> int:
    seed, root, split, recipe = job
    cv2.setNumThreads(1)  # one process per core does better than threads inside each
    write_example(sample_phantom(seed, recipe), Path(root), split, recipe.imgsz, recipe.names)
    return seed


def write_dataset(root: Path, recipe: Recipe, processes: int = 1) -> Path:
    """Write the training and validation phantoms and ultralytics' dataset yaml; returns the yaml."""
    jobs = [(s, str(root), "train", recipe) for s in range(*recipe.train_seeds)]
    jobs += [(s, str(root), "val", recipe) for s in range(*recipe.val_seeds)]
    if processes > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(processes) as pool:
            for _ in pool.imap_unordered(_write_one, jobs, chunksize=8):
                pass
    else:
        for job in jobs:
            _write_one(job)
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(recipe.names))
    data = root / "phantoms.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}\n", encoding="utf-8")
    return data


# --------------------------------------------------------------------------- offline ultralytics

_NETWORK_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto", "urllib.Request")


def _refuse_network(attempts: list[str]) -> None:
    """Refuse (and record) every network access from now on in this process; audit hooks cannot be removed."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event not in _NETWORK_EVENTS:
            return
        if event == "socket.connect" and getattr(args[0], "family", None) not in (2, 10):  # AF_INET, AF_INET6
            return  # local sockets are not the network
        import traceback

        caller = next(
            (
                f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno}"
                for f in reversed(traceback.extract_stack()[:-1])
                if "socket.py" not in f.filename and "requests" not in f.filename and "urllib" not in f.filename
            ),
            "?",
        )
        attempts.append(f"{event} {args[:2]!r} from {caller}"[:300])
        raise OSError(f"network access refused while training the demo detector ({event})")

    sys.addaudithook(hook)


@contextlib.contextmanager
def offline_ultralytics(scratch: Path) -> Iterator[None]:
    """Environment set *before* ultralytics is imported: offline, no installs, settings and caches in ``scratch``."""
    config = scratch / "ultralytics-config"
    fonts = config / "Ultralytics"  # ultralytics' USER_CONFIG_DIR under YOLO_CONFIG_DIR
    fonts.mkdir(parents=True, exist_ok=True)
    # ultralytics checks for Arial.ttf when it reads a dataset and downloads it when missing; matplotlib
    # ships DejaVu Sans, which serves as well (no plots are drawn anyway).
    environment = {
        # matplotlib (imported by ultralytics) would otherwise write its font cache into the home folder.
        "MPLCONFIGDIR": str(scratch / "matplotlib"),
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "False",
        "YOLO_CONFIG_DIR": str(config),
        "YOLO_VERBOSE": "True",
    }
    with temporary_environ(environment):
        import matplotlib

        font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            shutil.copyfile(font, fonts / name)
        yield


# --------------------------------------------------------------------------- training


def train(recipe: Recipe, data: Path, workdir: Path) -> tuple[Any, dict[str, Any]]:
    """Train from the yaml; returns the EMA model of the best epoch (float32, eval) and ultralytics' figures."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(recipe.seed)
    model = YOLO(recipe.architecture, task="detect")

    def set_threads(_trainer: Any) -> None:
        # ultralytics sets min(8, CPUs - 1) threads when it picks the CPU; the recipe's count is used instead,
        # so that the rounding (and with it the weights) does not depend on the machine's size.
        torch.set_num_threads(recipe.threads)

    model.add_callback("on_pretrain_routine_end", set_threads)
    metrics = model.train(
        data=str(data),
        epochs=recipe.epochs,
        imgsz=recipe.imgsz,
        batch=recipe.batch,
        device="cpu",
        workers=0,
        seed=recipe.seed,
        deterministic=True,
        pretrained=False,
        amp=False,
        plots=False,
        val=True,
        cache=True,  # ultralytics warns that RAM caching may not be deterministic; with workers=0 it is (verified)
        project=str(workdir),
        name="train",
        exist_ok=True,
        verbose=True,
        **recipe.hyperparameters,
    )
    trainer: Any = model.trainer
    best = Path(trainer.best)
    checkpoint = torch.load(best, map_location="cpu", weights_only=False)  # written by this run, a moment ago
    network = (checkpoint.get("ema") or checkpoint["model"]).float().eval()
    box = metrics.box
    figures = {
        "best_epoch": int(trainer.stopper.best_epoch),  # counted from 1
        "mAP50": float(box.map50),
        "mAP50-95": float(box.map),
        "precision": float(box.mp),
        "recall": float(box.mr),
        "per_class_mAP50": {recipe.names[int(c)]: float(ap) for c, ap in zip(box.ap_class_index, box.ap50)},
        "per_class_mAP50-95": {recipe.names[int(c)]: float(ap) for c, ap in zip(box.ap_class_index, box.ap)},
    }
    return network, figures


def evaluate_levels(network: Any, root: Path, recipe: Recipe, conf: float = 0.25, iou: float = 0.45) -> dict[str, Any]:
    """The held-out phantoms through the runtime's own numpy letterbox and decoding: levels found and named."""
    import torch

    from olvf.runtime.bundle.config import DetectorSpec
    from olvf.runtime.steps.detection import box_iou, letterbox, postprocess

    settings = DetectorSpec(
        input_size=(recipe.imgsz, recipe.imgsz), stride=32, names=recipe.names, layout="yolov8", conf=conf, iou=iou
    )
    found = named = total = 0
    ious: list[float] = []
    missed: dict[str, int] = {}
    for image_path in sorted((root / "images" / "val").glob("*.png")):
        read = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
        if read is None:
            raise OSError(f"could not read {image_path}")
        image = read.astype(np.float32) / 255  # the display scale
        rows, cols = image.shape
        labels = np.loadtxt(root / "labels" / "val" / f"{image_path.stem}.txt", ndmin=2)
        truth = np.stack(
            [
                (labels[:, 1] - labels[:, 3] / 2) * cols,
                (labels[:, 2] - labels[:, 4] / 2) * rows,
                (labels[:, 1] + labels[:, 3] / 2) * cols,
                (labels[:, 2] + labels[:, 4] / 2) * rows,
            ],
            axis=1,
        )
        tensor, box = letterbox(image, (recipe.imgsz, recipe.imgsz))
        with torch.no_grad():
            raw = network(torch.from_numpy(tensor[None]))
        raw = (raw[0] if isinstance(raw, (tuple, list)) else raw)[0].numpy()
        detections = postprocess(raw, box, settings)
        for (cls, *_), truth_box in zip(labels, truth):
            level = recipe.names[int(cls)]
            total += 1
            best = box_iou(truth_box[None], detections.boxes)[0] if len(detections) else np.zeros(0)
            if len(best) and best.max() >= 0.5:
                found += 1
                if detections.levels[int(best.argmax())] == level:
                    named += 1
                    ious.append(float(best.max()))
                    continue
            missed[level] = missed.get(level, 0) + 1
    return {
        "phantoms": recipe.val_count,
        "levels": total,
        "found_iou_0.5": found,
        "found_and_named": named,
        "median_iou": float(np.median(ious)) if ious else 0.0,
        "min_iou": float(min(ious)) if ious else 0.0,
        "missed_or_misnamed": missed,
    }


# --------------------------------------------------------------------------- output


def save_weights(network: Any, recipe: Recipe, figures: dict[str, Any], out: Path) -> str:
    """Save the state_dict in FP16 with what rebuilds it; nothing in the file is code. Returns its SHA-256."""
    import torch

    state = {
        key: (value.detach().half() if value.is_floating_point() else value.detach()).contiguous()
        for key, value in network.state_dict().items()
    }
    payload = {
        "format": "olvf demo detector 1",
        "state_dict": state,
        "yaml": recipe.architecture,
        "names": list(recipe.names),
        "imgsz": recipe.imgsz,
        "stride": int(max(network.stride)),
        "recipe": json.loads(json.dumps(asdict(recipe))),
        "validation": json.loads(json.dumps(figures)),
    }
    # Through a buffer: torch names the archive inside the file after the file, and the bytes should not
    # depend on where they were written.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)  # the promise: no code runs on loading
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(out.name + ".partial")
    staging.write_bytes(data)
    os.replace(staging, out)
    return hashlib.sha256(data).hexdigest()


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def record(
    out: Path, sha256: str, recipe: Recipe, figures: dict[str, Any], timings: dict[str, float], attempts: list[str]
) -> str:
    """The Markdown record written beside the weights."""
    import torch
    import ultralytics

    per_class = ", ".join(
        f"{name} {figures['per_class_mAP50'].get(name, 0):.3f}/{figures['per_class_mAP50-95'].get(name, 0):.3f}"
        for name in recipe.names
    )
    levels = figures["runtime_levels"]
    threads = f"{recipe.threads} torch thread{'s' if recipe.threads > 1 else ''}"
    command = (
        f"python export/dev/train_demo_detector.py --out {out.as_posix()} --train {recipe.train_count} "
        f"--val {recipe.val_count} --epochs {recipe.epochs} --batch {recipe.batch} --seed {recipe.seed} "
        f"--threads {recipe.threads}"
    )
    table = [
        ("file", f"`{out.name}`, {out.stat().st_size / 1e6:.2f} MB"),
        ("SHA-256", f"`{sha256}`"),
        (
            "format",
            "`torch.load(weights_only=True)`: `state_dict` (FP16), `yaml`, `names`, `imgsz`, `stride`, `recipe`, "
            "`validation`; no pickled code",
        ),
        (
            "architecture",
            f"`{recipe.architecture}` (ultralytics, built from its yaml), {len(recipe.names)} classes "
            f"`{', '.join(recipe.names)}`, input {recipe.imgsz}x{recipe.imgsz}, stride 32",
        ),
    ]
    made = [
        f"Data: {recipe.train_count} training phantoms (seeds {recipe.train_seeds[0]}..{recipe.train_seeds[1] - 1}) "
        f"and {recipe.val_count} held-out validation phantoms (seeds {recipe.val_seeds[0]}.."
        f"{recipe.val_seeds[1] - 1}); the tests use other seeds. Matrix {recipe.rows_range[0]}-{recipe.rows_range[1]} "
        f"rows (log-uniform), columns {recipe.aspect_range[0]}-{recipe.aspect_range[1]} x rows; half the phantoms "
        "with fractures chosen by the seed (each level with probability 0.12), half with one or two forced "
        "old/fresh fractures.",
        "Images: the DICOM window applied as the runtime applies it, shrunk as the runtime's letterbox shrinks the "
        f"radiograph (long side {recipe.imgsz}, `INTER_LINEAR`). Labels: one class per level, T12-L5; T11 and S1 "
        "are drawn but not labelled (the detector must learn to leave them out; the study classifies T12-L5 only).",
        f"Training: {recipe.epochs} epochs, batch {recipe.batch}, seed {recipe.seed}, `deterministic=True`, CPU, "
        f"{threads}, no pretrained weights, no AMP, no plots; "
        + ", ".join(f"`{k}={v}`" for k, v in recipe.hyperparameters.items())
        + "; the rest ultralytics' defaults. The best epoch by ultralytics' fitness (mAP50-95 on the validation "
        f"phantoms) was kept: epoch {figures['best_epoch']} of {recipe.epochs}.",
        f"Time: drawing the phantoms {timings['dataset_s'] / 60:.1f} min, training {timings['train_s'] / 60:.1f} min "
        f"({timings['train_s'] / recipe.epochs:.0f} s per epoch with validation); CPU: {_cpu_name()}, "
        f"{os.cpu_count()} logical CPUs shared with other work.",
        f"Versions: ultralytics {ultralytics.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}.",
        "Network: " + ("no access was attempted." if not attempts else "attempts refused: " + "; ".join(attempts)),
    ]
    validation = [
        ("mAP50 (ultralytics)", f"{figures['mAP50']:.3f}"),
        ("mAP50-95 (ultralytics)", f"{figures['mAP50-95']:.3f}"),
        ("precision / recall", f"{figures['precision']:.3f} / {figures['recall']:.3f}"),
        ("per level mAP50 / mAP50-95", per_class),
        (
            "levels found with IoU >= 0.5 **and** the right name, runtime decoding (conf 0.25)",
            f"{levels['found_and_named']} of {levels['levels']}",
        ),
        ("their IoU, median / min", f"{levels['median_iou']:.3f} / {levels['min_iou']:.3f}"),
        ("missed or misnamed, per level", str(levels["missed_or_misnamed"] or "none")),
    ]
    rows = "\n".join(f"| {k} | {v} |" for k, v in table)
    bullets = "\n".join(f"- {line}" for line in made)
    figures_rows = "\n".join(f"| {k} | {v} |" for k, v in validation)
    return f"""# The demo detector (`{out.name}`)

The vertebra detector of the demo bundle (`olvf-export --demo`): an ultralytics
YOLOv5u-nano trained from scratch on phantom radiographs drawn by
`olvf.phantom`. It finds the phantoms' vertebral bodies and names their levels;
it has never seen a patient and must not be used on one. This file is written
by `export/train_demo_detector.py`, whose docstring explains every choice.

| | |
|---|---|
{rows}

## How it was made

```bash
{command}
```

{bullets}

The same command on the same kind of CPU gives the same bytes (checked by
running a short version of it twice); another CPU may round differently and give slightly different
weights of the same quality, in which case the SHA-256 above and this record
are the ones to update, together.

## Validation on the {recipe.val_count} held-out phantoms

| figure | value |
|---|---|
{figures_rows}

The last rows run the validation images through `olvf.runtime.steps.detection`
(letterbox, decoding, NMS, one box per level) as the bundle does.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python export/dev/train_demo_detector.py",
        description="Train the demo bundle's vertebra detector on phantoms (CPU, offline, reproducible).",
    )
    parser.add_argument("--out", type=Path, required=True, help="weights file, e.g. export/demo_detector.pt")
    parser.add_argument("--train", type=int, default=Recipe.train_count, help="training phantoms (default %(default)s)")
    parser.add_argument("--val", type=int, default=Recipe.val_count, help="validation phantoms (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=Recipe.epochs, help="default %(default)s")
    parser.add_argument("--batch", type=int, default=Recipe.batch, help="default %(default)s")
    parser.add_argument("--seed", type=int, default=Recipe.seed, help="training seed (default %(default)s)")
    parser.add_argument("--threads", type=int, default=Recipe.threads, help="torch CPU threads (default %(default)s)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="for drawing phantoms")
    parser.add_argument("--keep", type=Path, help="keep the dataset and ultralytics' run folder here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.train, args.val, args.epochs, args.batch, args.threads) < 1:
        print(
            "train_demo_detector: error: --train, --val, --epochs, --batch and --threads must be at least 1",
            file=sys.stderr,
        )
        return 2
    recipe = Recipe.make(args.train, args.val, args.epochs, args.batch, args.seed, args.threads)
    attempts: list[str] = []
    _refuse_network(attempts)
    scratch = Path(tempfile.mkdtemp(prefix="olvf-demo-detector-"))
    workdir = args.keep.resolve() if args.keep else scratch
    try:
        started = time.monotonic()
        data = write_dataset(workdir / "phantoms", recipe, processes=max(1, args.processes))
        dataset_s = time.monotonic() - started
        print(f"dataset: {recipe.train_count} + {recipe.val_count} phantoms in {dataset_s:.0f} s", flush=True)
        with offline_ultralytics(scratch):
            started = time.monotonic()
            network, figures = train(recipe, data, workdir / "runs")
            train_s = time.monotonic() - started
            figures["runtime_levels"] = evaluate_levels(network, workdir / "phantoms", recipe)
            sha256 = save_weights(network, recipe, figures, args.out)
            timings = {"dataset_s": dataset_s, "train_s": train_s, "threads": recipe.threads}
            text = record(args.out, sha256, recipe, figures, timings, attempts)
        args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"sha256": sha256, **figures, **timings}, indent=2))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    if attempts:
        print(f"train_demo_detector: network access was attempted and refused: {attempts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
