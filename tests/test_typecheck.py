"""The type check checks, and the wheel ships what the source tree holds.

mypy runs from the repository root with no arguments (its configuration is in pyproject.toml) and must see every
``olvf.*`` import as the module it is: with imports that do not resolve, every cross-module name is ``Any`` and a
wrong type passes. The probes make that failure visible: a wrong one must fail, a right one must pass.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MYPY = shutil.which("mypy", path=str(Path(sys.executable).parent))
needs_mypy = pytest.mark.skipif(MYPY is None, reason="mypy is not installed (pip install -e '.[test]')")


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    assert MYPY is not None
    return subprocess.run([MYPY, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@needs_mypy
def test_mypy_with_no_arguments_checks_every_shipped_module_and_finds_nothing() -> None:
    done = _mypy()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    counted = re.search(r"(?:in|checked) (\d+) source files?", done.stdout)
    assert counted, done.stdout
    checked = int(counted.group(1))
    shipped = [p for folder in ("runtime", "export", "bench") for p in (ROOT / folder).rglob("*.py")]
    shipped = [p for p in shipped if "dev" not in p.relative_to(ROOT).parts[1:-1]]
    shipped += [p for p in (ROOT / "src" / "olvf").rglob("*.py") if not p.is_symlink()]
    assert checked >= len(shipped), f"mypy checked {checked} files of {len(shipped)}"


@needs_mypy
@pytest.mark.parametrize(
    ("probe", "wrong"),
    [
        ("from olvf.runtime.bundle.config import CropSettings\nx: int = CropSettings\n", True),
        ("from olvf.runtime.bundle.config import CropSettings\nx: type[CropSettings] = CropSettings\n", False),
        ("from olvf.runtime.study.runtime import Runtime\ndef f(rt: Runtime) -> int:\n    return rt.manifest\n", True),
        ("import olvf.runtime.study.runtime as r\ndef f(rt: r.Runtime) -> str:\n    return rt.backend\n", False),
        ("from olvf.phantom import make_phantom\nx: str = make_phantom(1).seed\n", True),
    ],
    ids=["wrong-type-of-a-runtime-class", "right-type", "wrong-return-across-stages", "right-return", "wrong-phantom"],
)
def test_a_probe_with_a_wrong_type_fails_the_check_and_a_right_one_passes(
    tmp_path: Path, probe: str, wrong: bool
) -> None:
    path = tmp_path / "probe.py"
    path.write_text(probe)
    done = _mypy("--config-file", str(ROOT / "pyproject.toml"), str(path))
    if wrong:
        assert done.returncode == 1 and "probe.py:" in done.stdout, done.stdout
    else:
        assert done.returncode == 0, done.stdout


def _source_modules() -> set[str]:
    found = set()
    for package, folder in {"olvf": ROOT / "src" / "olvf", "olvf/runtime": ROOT / "runtime"}.items():
        for path in folder.rglob("*.py"):
            if any(part.is_symlink() for part in [path, *path.parents] if part != path and part.is_relative_to(folder)):
                continue
            found.add(f"{package}/{path.relative_to(folder).as_posix()}")
    for package in ("export", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            if "dev" not in path.relative_to(ROOT / package).parts[:-1]:
                found.add(f"olvf/{package}/{path.relative_to(ROOT / package).as_posix()}")
    return found


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("setuptools") is None,
    reason="setuptools is not in this environment (venvs of Python 3.12 and later lack it): pip install setuptools",
)
def test_the_wheel_holds_every_module_of_the_source_tree(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("olvf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {n for n in names if n.endswith(".py")}
    assert modules == _source_modules(), (
        f"missing from the wheel: {sorted(_source_modules() - modules)}; "
        f"in the wheel only: {sorted(modules - _source_modules())}"
    )
    assert {"olvf/py.typed", "olvf/export/demo_detector.pt", "olvf/export/demo_classifiers.pt"} <= names
    assert not any("/dev/" in n for n in names), "development scripts are not installed"
