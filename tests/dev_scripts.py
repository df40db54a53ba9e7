"""Development scripts live in the repository, not in the installed package: tests load them by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_dev_script(relative: str) -> ModuleType:
    """Import ``relative`` (e.g. ``export/dev/train_demo_detector.py``) as a module, once."""
    path = ROOT / relative
    name = "olvf_dev_" + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"no script at {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name while the script runs
    spec.loader.exec_module(module)
    return module
