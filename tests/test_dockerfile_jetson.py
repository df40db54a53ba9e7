"""Dockerfile.jetson keeps the promises docs/how-to/tensorrt-jetson.md makes for the Jetson image (no Docker engine
here to build it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from olvf.runtime.cli import build_parser

DOCKERFILE = Path(__file__).parent.parent / "Dockerfile.jetson"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_base_is_a_pinned_jetpack_image() -> None:
    args = {k: v for k, v in (i[1].split("=", 1) for i in _instructions() if i[0] == "ARG" and "=" in i[1])}
    assert re.fullmatch(r"nvcr\.io/nvidia/l4t-jetpack:r3[6-9]\.\d+\.\d+", args["L4T_IMAGE"])
    assert ("FROM", "${L4T_IMAGE}") in _instructions()


def test_only_the_lean_runtime_is_installed() -> None:
    installs = " ".join(arg for op, arg in _instructions() if op == "RUN" and "pip install" in arg)
    assert installs, "the runtime must be installed"
    for forbidden in ("torch", "ultralytics", "[export]", "tensorrt", "onnxruntime-gpu"):
        assert forbidden not in installs, f"{forbidden} must not be pip-installed on Jetson"
    assert "--system-site-packages" in DOCKERFILE.read_text(), "JetPack's TensorRT must stay visible"


def test_runs_as_a_non_root_user_with_the_bundle_as_a_volume() -> None:
    ops = _instructions()
    users = [arg for op, arg in ops if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert users[-1].isdigit(), "a numeric uid: Kubernetes can check runAsNonRoot"
    assert any(op == "VOLUME" and "/bundle" in arg for op, arg in ops)
    entry = next(arg for op, arg in ops if op == "ENTRYPOINT")
    assert entry.startswith("[") and "olvf-infer" in entry and "/bundle" in entry, "exec form, bundle from the volume"


def _olvf_command() -> list[str]:
    """The entry point from olvf-infer on (after the init process in front of it)."""
    entry = json.loads(next(arg for op, arg in _instructions() if op == "ENTRYPOINT"))
    return entry[next(i for i, part in enumerate(entry) if part.endswith("/olvf-infer")) :]


def test_an_init_process_forwards_sigterm_to_olvf_infer() -> None:
    """docker stop sends SIGTERM to PID 1; tini forwards it, olvf-infer cleans up as on Ctrl-C (exit 143)."""
    entry = json.loads(next(arg for op, arg in _instructions() if op == "ENTRYPOINT"))
    assert entry[:2] == ["/usr/bin/tini", "--"] and entry[2].endswith("/olvf-infer")
    installs = " ".join(arg for op, arg in _instructions() if op == "RUN" and "apt-get install" in arg)
    assert " tini" in installs


def test_engines_are_built_on_the_first_start_on_the_device() -> None:
    entry = _olvf_command()
    assert "--build-engines-if-needed" in entry
    # The flag must be one olvf-infer knows, with an empty input list allowed (a build-only start).
    args = build_parser().parse_args(entry[1:])
    assert args.build_engines_if_needed and args.bundle == Path("/bundle") and args.inputs == []


def test_its_user_can_open_the_jetson_gpu() -> None:
    """/dev/nvmap and friends belong to the host's video and render groups; USER uid:gid would drop them."""
    ops = _instructions()
    user = [arg for op, arg in ops if op == "USER"][-1]
    assert ":" not in user, "USER with a group drops the supplementary groups CUDA needs"
    creation = next(arg for op, arg in ops if op == "RUN" and "useradd" in arg)
    groups = re.search(r"(?:--groups|-G)[ =](\S+)", creation)
    assert groups and set(groups.group(1).split(",")) >= {"video", "render"}
    assert re.search(r"--uid (\d+)", creation).group(1) == user
    assert "groupadd --system render" in creation, "the render group may be missing in the base image"


def test_the_runtime_comes_with_the_jetson_extra_pinned_to_jetpack() -> None:
    tomllib = pytest.importorskip("tomllib")
    installs = " ".join(arg for op, arg in _instructions() if op == "RUN" and "pip install" in arg)
    assert '".[jetson]"' in installs
    extras = tomllib.loads((DOCKERFILE.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = {re.split(r"[<>=~!;\[ ]", r, maxsplit=1)[0]: r for r in extras["jetson"]}
    assert pins["numpy"] == "numpy>=1.24,<2", "JetPack 6's TensorRT bindings were built against NumPy 1.x"
    assert pins["cuda-python"] == "cuda-python~=12.6.2", "JetPack 6 ships CUDA 12.6"
    assert not any(name.startswith("tensorrt") for name in pins), "TensorRT comes with JetPack"


def test_apt_lists_are_cleaned_and_no_cache_is_kept() -> None:
    runs = [arg for op, arg in _instructions() if op == "RUN" and "apt-get install" in arg]
    assert all("rm -rf /var/lib/apt/lists/*" in run and "--no-install-recommends" in run for run in runs)
    assert "PIP_NO_CACHE_DIR=1" in DOCKERFILE.read_text()


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install 'olvf[test]' brings it on x86-64 Linux)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
