"""The code's layering: data flows one way, entry points are thin callers, and nothing imports in a circle.

Read from the source with ``ast``. Imports inside functions count too (a lazy
import must not hide a cycle), and so do imports under ``TYPE_CHECKING``: a
type that needs a module above its own is a layering fault all the same.

runtime/ is folders in data-flow order (:data:`STAGES`): a module may import its
own stage and those before it, never one after. Below every stage lies the
bottom layer, the other ``olvf.*`` modules (errors, text, atomic writes, the
vocabulary, the phantoms), which imports no stage at all; the ``olvf`` package
itself is the public entry (``olvf.load``) and may reach up.
"""

from __future__ import annotations

import ast
import re
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
#: runtime/'s folders in data-flow order, then the applications on top of them.
STAGES = ("bundle", "inputs", "steps", "runners", "study", "checks", "writers", "validation", "node", "cli")
MAX_LINES = 650  # a shipped module a reader can hold in mind; past this it is two modules


def module_imports(name: str) -> set[str]:
    """olvf modules ``name`` imports anywhere (``from a import b`` counts b when b is a module)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
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
        "import sys, olvf.runtime.bundle.manifest, olvf.runtime.bundle.config\n"
        "print(sorted(m for m in ('cv2', 'pydicom', 'onnxruntime', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _stage(name: str) -> int:
    """Where a module sits: -1 the bottom layer, the stage's index in runtime/, len(STAGES) export and bench."""
    parts = name.split(".")
    if parts[:2] == ["olvf", "runtime"]:
        return STAGES.index(parts[2]) if len(parts) > 2 else len(STAGES) - 1  # the package's own __init__
    if parts[:2] in (["olvf", "export"], ["olvf", "bench"]):
        return len(STAGES)
    return -1


def test_runtime_is_folders_in_data_flow_order() -> None:
    runtime = ROOT / "runtime"
    folders = {p.name for p in runtime.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(STAGES) - {"cli"}
    assert {p.name for p in runtime.glob("*.py")} == {"__init__.py", "cli.py"}, "every runtime module has a stage"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m != "olvf"))
def test_a_module_imports_only_its_stage_and_those_before_it(name: str) -> None:
    later = {m for m in module_imports(name) if m != "olvf" and _stage(m) > _stage(name)}
    where = "the bottom layer" if _stage(name) < 0 else f"stage {_stage(name)}"
    assert not later, f"{name} ({where}) imports later stages: {sorted(later)}"


def test_type_checking_imports_are_part_of_the_graph() -> None:
    """They used to be skipped, which let pipeline <-> session pass as no cycle; count them, and see them counted."""
    found = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = [n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
        imported = {f"{c.module}" for g in guarded for c in ast.walk(g) if isinstance(c, ast.ImportFrom) and c.module}
        imported = {m for m in imported if m in MODULES}
        if imported:
            found[name] = imported
            assert imported <= module_imports(name), f"{name}: TYPE_CHECKING imports missing from the graph"
    assert 0 < len(found) <= 8, f"{len(found)} modules import for type checking only: {sorted(found)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_shipped_module_is_too_long_to_read(name: str) -> None:
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {lines} lines; split it by what it does"


def test_the_phantoms_and_the_vocabulary_sit_below_the_runtime() -> None:
    for name in (m for m in MODULES if m == "olvf.vocabulary" or m.startswith("olvf.phantom")):
        assert _stage(name) == -1 and not {m for m in module_imports(name) if _stage(m) >= 0}, name


def test_classes_levels_and_regions_are_defined_once() -> None:
    """The study's words come from olvf.vocabulary; a literal tuple of them anywhere else is a second definition."""
    words = {
        "classes": '"normal", "old", "fresh"',
        "levels": '"T12", "L1", "L2", "L3", "L4", "L5"',
        "regions": '"centre", "upper_endplate", "lower_endplate"',
    }
    for name, path in MODULES.items():
        if name == "olvf.vocabulary":
            continue
        text = path.read_text(encoding="utf-8")
        for what, literal in words.items():
            assert not re.search(re.escape(literal), text), f"{name} defines the {what} again; import olvf.vocabulary"


def test_an_import_graph_tool_sees_every_module_and_import_and_the_stage_order() -> None:
    """grimp (import-linter's engine) reads the installed package as any tool does: through its import paths.

    With runtime/ reachable only through setuptools' package-dir mapping it saw almost no olvf.runtime import;
    src/olvf's links put every module at its import path.
    """
    grimp = pytest.importorskip("grimp", reason="grimp is not installed (pip install -e '.[test]')")
    graph = grimp.build_graph("olvf")
    assert set(MODULES) <= graph.modules, f"grimp misses {sorted(set(MODULES) - graph.modules)}"
    for name in MODULES:
        seen = graph.find_modules_directly_imported_by(name)
        # packages aside: grimp counts `from olvf.runtime.bundle import tolerances` as the module, not the package
        ours = {m for m in module_imports(name) if MODULES[m].name != "__init__.py"}
        assert ours <= seen, f"grimp misses {sorted(ours - seen)} imported by {name}"
    layers = tuple(reversed(STAGES))  # grimp lists layers from the top
    illegal = graph.find_illegal_dependencies_for_layers(layers=layers, containers={"olvf.runtime"})
    assert not illegal, [(d.importer, d.imported) for d in illegal]
