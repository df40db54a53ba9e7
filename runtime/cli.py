"""``olvf-infer``: run a bundle on images.

At this stage the bundle holds the classifier ensemble only, so each image
is taken as one vertebral-body crop; the detector and full radiographs
(DICOM) come with their own issues.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from olvf.errors import InputError, OlvfError
from olvf.runtime.runners import backend_names


def read_crop(path: Path) -> np.ndarray:
    """A grayscale crop scaled to 0..255 from an 8- or 16-bit PNG/JPEG/TIFF."""
    import cv2

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"{path}: not an image OpenCV can read (PNG, JPEG, TIFF)")
    if image.ndim == 3:
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
    if image.dtype == np.uint16:
        return image.astype(np.float32) * (255.0 / 65535.0)
    if image.dtype != np.uint8:
        raise InputError(f"{path}: {image.dtype} pixels are not supported; use 8- or 16-bit images")
    return image


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="olvf-infer",
        description="Classify vertebral-body crops (normal / old / fresh) with a model bundle.",
    )
    parser.add_argument("images", nargs="+", type=Path, help="crop images (PNG, JPEG, TIFF)")
    parser.add_argument("--bundle", type=Path, default=Path("engines"), help="bundle folder (default engines/)")
    parser.add_argument("--backend", default="onnxruntime", help=f"one of {', '.join(backend_names())}")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default=None, help="graph to run (default fp32)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    return parser


def run(args: argparse.Namespace) -> int:
    import olvf

    crops = [read_crop(path) for path in args.images]
    with olvf.load(args.bundle, backend=args.backend, precision=args.precision) as rt:
        result = rt.classify_crops(crops)
        demo = rt.manifest.demo
        backend = {"name": rt.backend, "device": rt.runner.device, "precision": rt.precision}
    rows: list[dict[str, Any]] = []
    for i, path in enumerate(args.images):
        peak = np.unravel_index(int(result.cam[i].argmax()), result.cam[i].shape)
        rows.append(
            {
                "input": str(path),
                "prediction": result.labels[i],
                "probabilities": dict(zip(result.classes, map(float, result.probabilities[i]))),
                "models": {
                    name: dict(zip(result.classes, map(float, probs[i])))
                    for name, probs in result.model_probabilities.items()
                },
                "gradcam_peak_yx": [int(peak[0]), int(peak[1])],
            }
        )
    report = {"bundle": str(args.bundle), "demo": demo, "backend": backend, "crops": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if demo:
        print("DEMO bundle: random weights, not for diagnosis")
    print(f"{'crop':40s} {'class':7s} {'normal':>7s} {'old':>7s} {'fresh':>7s}")
    for row in rows:
        p = row["probabilities"]
        print(f"{row['input'][-40:]:40s} {row['prediction']:7s} {p['normal']:7.3f} {p['old']:7.3f} {p['fresh']:7.3f}")
    print(f"backend {backend['name']} on {backend['device']} ({backend['precision']})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except OlvfError as exc:
        print(f"olvf-infer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("olvf-infer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
