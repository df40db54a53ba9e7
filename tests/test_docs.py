"""The documentation: a short README over a site that builds strictly, offline, with reference pages that match
the code.

- ``mkdocs build --strict`` passes (warnings are errors: a broken link, a page
  left out of the navigation, a generated table whose code moved), every
  generated marker is filled, and no page loads anything from another host.
- The README stays short, and its Quick start block is the two command lines
  that ``.ci/run`` reads (it runs the second).
- The README's links lead to files that exist.
- The hand-written ``report.json`` reference lists every key a real report has,
  and the backends page names every registered backend.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_doc_commands import console_scripts

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 220

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="the docs site needs mkdocs and mkdocs-material: pip install '.[docs]'",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's notice about its successor, not a warning
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


@needs_mkdocs
def test_site_builds_strictly_with_every_generated_table_filled(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert (site / "index.html").is_file() and len(pages) > 30
    unfilled = [p.relative_to(site) for p in pages if "<!-- olvf:" in p.read_text(encoding="utf-8")]
    assert not unfilled, f"markers left unfilled in {unfilled}"
    conformance = (site / "reference" / "dicom-conformance.html").read_text(encoding="utf-8")
    for uid in ("1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.34"):
        assert uid in conformance, f"the conformance statement lacks {uid}"


@needs_mkdocs
def test_every_command_has_its_help_in_the_reference(site: Path) -> None:
    cli = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    for name in console_scripts():
        assert f'id="{name}"' in cli and f"usage: {name}" in cli, f"{name} has no --help in the CLI reference"


# Anything a page would fetch from another host when it is opened: scripts, style sheets, fonts, frames, images.
REMOTE_LOADS = re.compile(
    r"<(?:script|img|iframe|source)\b[^>]*\bsrc=[\"']?(?:https?:)?//"
    r"|<link\b[^>]*\bhref=[\"']?(?:https?:)?//"
    r"|@import\s+(?:url\()?[\"']?(?:https?:)?//"
    r"|url\([\"']?(?:https?:)?//",
    re.IGNORECASE,
)


@needs_mkdocs
def test_site_loads_nothing_from_another_host(site: Path) -> None:
    """Offline by design: no web fonts, no CDN scripts, no diagrams drawn by a script fetched at view time."""
    offenders = []
    for path in [*site.rglob("*.html"), *site.rglob("*.css")]:
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in REMOTE_LOADS.finditer(text):
            offenders.append(f"{path.relative_to(site)}: {text[match.start() : match.start() + 120]!r}")
        if path.suffix == ".html" and re.search(r'class="[^"]*\bmermaid\b', text):
            offenders.append(f"{path.relative_to(site)}: a mermaid diagram (its script comes from a CDN)")
    assert not offenders, "\n".join(offenders)


def test_site_configuration_is_offline() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s*font:\s*false\s*(#.*)?$", config, re.MULTILINE), "mkdocs.yml must set theme font: false"
    assert "extra_javascript" not in config and "extra_css" not in config
    assert "--strict" in (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")


# --- the README ------------------------------------------------------------------------------------------


def _quick_start_block(text: str) -> list[str]:
    """The lines of the first code block after ``## Quick start``, read as .ci/run's awk reads them."""
    lines, inside, fences = [], False, 0
    for line in text.splitlines():
        if line.startswith("## Quick start"):
            inside = True
        if not inside:
            continue
        if line.startswith("```"):
            fences += 1
            continue
        if fences == 1:
            lines.append(line)
    return lines


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_quick_start_is_two_command_lines_and_ci_runs_the_second() -> None:
    block = _quick_start_block(README.read_text(encoding="utf-8"))
    commands = [line for line in block if line.strip()]
    assert len(block) == 2 and len(commands) == 2, f"the Quick start block must be exactly two lines: {block}"
    assert "olvf-export --demo --out engines/demo" in commands[0] and "olvf-infer" in commands[0]
    assert "pytest" in commands[1], "the second line is the test command .ci/run runs"
    awk = shutil.which("awk")
    if awk is not None:  # the very extraction .ci/run does
        ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
        program = re.search(r"awk '([^']+)' README\.md", ci)
        assert program, ".ci/run no longer reads the Quick start with awk; update this test"
        extracted = subprocess.run([awk, program.group(1), str(README)], capture_output=True, text=True, check=True)
        assert extracted.stdout.splitlines()[1] == commands[1]


def test_readme_links_lead_to_files_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (ROOT / target.split("#", 1)[0]).exists():
            missing.append(target)
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_readme_says_what_the_licences_are() -> None:
    text = README.read_text(encoding="utf-8")
    assert "Apache" in text and "AGPL-3.0" in text
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")


# --- hand-written reference pages against the code -----------------------------------------------------------


def _documented_keys(page: Path) -> tuple[set[str], set[str]]:
    """The keys a reference table lists (first column, in backticks), and those its note marks as conditional."""
    keys, conditional = set(), set()
    for line in page.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2:
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        keys.update(names)
        if re.search(r"\bonly\b", cells[-1]):
            conditional.update(names)
    return keys, conditional


#: objects keyed by data (class, model or region names; a check's figures), documented as one key each
REPORT_MAPS = {"probabilities", "models", "regions", "figures", "signature", "window"}


def _report_keys(value: object, prefix: str = "", depth: int = 0) -> set[str]:
    """Key paths of a report: two levels (three under ``vertebrae[]``), a list of objects as ``name[]``."""
    found: set[str] = set()
    if isinstance(value, dict):
        limit = 3 if prefix.startswith("vertebrae[]") else 2
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else key
            found.add(path)
            if depth + 1 < limit and key not in REPORT_MAPS:
                found |= _report_keys(inner, path, depth + 1)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        found |= _report_keys(value[0], f"{prefix}[]", depth)
    return found


def test_report_reference_lists_every_key_of_a_real_report(
    cascade_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scripts = console_scripts()
    film = tmp_path / "film.dcm"
    assert scripts["olvf-phantom"].load()([str(film), "--seed", "1", "--fracture", "L2:fresh"]) == 0
    capsys.readouterr()
    argv = ["--bundle", str(cascade_bundle), "--out", str(tmp_path / "out"), "--json", "--dicom", str(film)]
    assert scripts["olvf-infer"].load()(argv) in (0, 9)
    (entry,) = json.loads(capsys.readouterr().out)
    report = entry["report"]
    assert report["vertebrae"], "the tiny cascade found no vertebra: the per-vertebra keys go unchecked"
    actual = _report_keys(report)
    # A row may document several keys at once (`overlay.scale`, `overlay.offset`) or one key's sub-keys in words.
    documented, conditional = _documented_keys(ROOT / "docs" / "reference" / "report.md")
    undocumented = sorted(k for k in actual if k not in documented)
    assert not undocumented, f"report.json keys missing from docs/reference/report.md: {undocumented}"
    stale = sorted(documented - actual - conditional)
    assert not stale, f"docs/reference/report.md lists keys a report does not have: {stale}"


def test_backends_page_names_every_backend() -> None:
    runners = importlib.import_module("olvf.runtime.runners")  # where backends are registered by name
    page = ROOT / "docs" / "reference" / "backends.md"
    rows = {
        re.sub(r"`", "", line.split("|")[1]).strip()
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    }
    names = {"auto", *runners.backend_names()}
    assert names <= rows, f"backends without a row in {page.name}: {sorted(names - rows)}"
    routes = {r for r in rows if "-" in r}
    assert not (rows - names - routes), f"rows in {page.name} for no backend: {sorted(rows - names - routes)}"
