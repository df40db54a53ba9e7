"""The code's layering: data flows one way, entry points are thin callers, and nothing imports in a circle.

Read from the source with ``ast``. Imports inside functions count too (a lazy
import must not hide a cycle); imports under ``TYPE_CHECKING`` do not.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"olvf": ROOT / "src" / "olvf", "olvf.runtime": ROOT / "runtime", "olvf.bench": ROOT / "bench"}
PACKAGES["olvf.export"] = ROOT / "export"


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            if "dev" in path.relative_to(folder).parts[:-1]:
                continue  # development scripts: not installed, not part of the layering
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = _modules()


def module_imports(name: str) -> set[str]:
    """olvf modules ``name`` imports anywhere (``from a import b`` counts b when b is a module)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in ast.walk(node):
            if isinstance(child, ast.Import):
                found |= {a.name for a in child.names if a.name.startswith("olvf")}
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("olvf"):
                found.add(child.module)
                found |= {f"{child.module}.{a.name}" for a in child.names if f"{child.module}.{a.name}" in MODULES}
    return {m for m in found if m in MODULES and m != name}


def test_no_import_cycles_in_olvf() -> None:
    graph = {name: module_imports(name) for name in MODULES}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize(
    "name",
    sorted(m for m in MODULES if not m.endswith((".cli", "cli_main", ".__main__"))),  # the entry points
)
def test_only_entry_points_import_command_line_modules(name: str) -> None:
    clis = {m for m in module_imports(name) if m.endswith(".cli")}
    assert not clis, f"{name} imports {clis}: library code and the benchmark call the library, not a CLI"


def test_the_pipeline_knows_no_writer_and_writers_know_no_entry_point() -> None:
    # The DICOM node (olvf-serve) sits downstream of the writers, as the command-line modules do.
    upstream = [
        m
        for m in MODULES
        if m.startswith("olvf.runtime.") and ".writers" not in m and ".node" not in m and not m.endswith(".cli")
    ]
    for name in upstream:
        writers = {m for m in module_imports(name) if m.startswith("olvf.runtime.writers")}
        assert not writers, f"{name} imports writers {writers}"
    for name in (m for m in MODULES if m.startswith("olvf.runtime.writers")):
        assert not {m for m in module_imports(name) if m.endswith(".cli") or m.startswith("olvf.runtime.node")}
    for name in (m for m in MODULES if m.startswith("olvf.runtime.") and not m.startswith("olvf.runtime.node")):
        assert not {m for m in module_imports(name) if m.startswith("olvf.runtime.node")}, f"{name} imports the node"


def test_reading_a_manifest_loads_neither_pydicom_nor_opencv() -> None:
    code = (
        "import sys, olvf.runtime.manifest, olvf.runtime.config\n"
        "print(sorted(m for m in ('cv2', 'pydicom', 'onnxruntime', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
