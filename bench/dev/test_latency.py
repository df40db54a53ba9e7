"""pytest-benchmark suite over a real bundle: ``pytest bench/ --benchmark-only``.

Uses the bundle at $OLVF_BENCH_BUNDLE (default engines/demo, made by the
README's first command); skipped when there is none. Not part of the test
suite: speed is measured here, never asserted there.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

import olvf

BUNDLE = Path(os.environ.get("OLVF_BENCH_BUNDLE", "engines/demo"))
pytestmark = pytest.mark.skipif(not (BUNDLE / "manifest.json").is_file(), reason=f"no bundle at {BUNDLE}")


@pytest.fixture(scope="module")
def study() -> Path:
    from olvf.bench.run import make_study

    return make_study(Path(tempfile.mkdtemp(prefix="olvf-bench-")))[0]


@pytest.fixture(scope="module")
def rt():
    with olvf.load(BUNDLE) as runtime:
        yield runtime


def test_whole_study(benchmark, rt, study) -> None:
    benchmark(rt.infer, study)


def test_detector(benchmark, rt, study) -> None:
    image = rt.infer(study)  # warm
    del image
    from olvf.runtime.inputs.reader import read_radiograph

    pixels = read_radiograph(study, rt.manifest.display).pixels * np.float32(255.0)
    benchmark(rt.detect, pixels)


@pytest.mark.parametrize("crops", [1, 6, 16])
def test_fused_ensemble(benchmark, rt, crops: int) -> None:
    batch = np.random.default_rng(0).standard_normal((crops, *rt.preprocess.input_shape), dtype=np.float32)
    benchmark(rt.classify, batch)
