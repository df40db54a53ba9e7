"""Every example in the README and the docs runs as written, as far as can be checked without running it.

- Every ``olvf-...`` command shown in a code block (alone, after ``.venv/bin/``
  or another path, chained with ``&&``, behind a ``$`` prompt, continued with
  ``\\``) is parsed by that command's real parser, found through the installed
  console-script entry points: an example with a misspelt flag, a missing
  argument or a wrong choice fails here, not on a user's machine. No example
  names the parent of the bundle folders (``--bundle engines/``) as a bundle.
- Every console script has at least one example.
- The configuration files shown (``title="serve.toml"``, ``title="use.json"``)
  are read by the code that reads them.
- The Python examples are valid Python, and every ``olvf`` name they import
  exists.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import io
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import distributions
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
#: what a bundle argument must never be: the folder that holds the bundles, not a bundle
BUNDLE_PARENTS = ("engines", "engines/", "./engines", "./engines/")
SEPARATORS = {"&&", "||", ";", "|", "&"}


def installed_distribution() -> Any:
    """olvf's installed ``.dist-info`` (as pip wrote it), not a stale ``olvf.egg-info`` that an in-tree build left
    in the working folder and that ``python -m pytest`` would find first on ``sys.path``."""
    found = list(distributions(name="olvf"))
    installed = [d for d in found if str(getattr(d, "_path", "")).endswith(".dist-info")]
    if not (installed or found):
        pytest.fail("olvf is not installed: pip install -e '.[test]'")
    return (installed or found)[0]


def console_scripts() -> dict[str, Any]:
    return {ep.name: ep for ep in installed_distribution().entry_points if ep.group == "console_scripts"}


def parser_for(module: ModuleType, args: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser a command line reaches: ``build_<sub>_parser`` for a subcommand (``olvf-serve status``), else
    ``build_parser``; and the arguments left for it."""
    if args and re.fullmatch(r"[a-z]+", args[0]):
        sub = getattr(module, f"build_{args[0]}_parser", None)
        if callable(sub):
            return sub(), args[1:]
    return module.build_parser(), args


# --- reading the documents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    info: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def language(self) -> str:
        return (self.info.split() or [""])[0].strip("{}.").lower()

    @property
    def title(self) -> str | None:
        match = re.search(r'title="([^"]+)"', self.info)
        return match.group(1) if match else None


def code_blocks(path: Path) -> Iterator[Block]:
    """The fenced code blocks of a Markdown file, indented ones (in lists, admonitions) too."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening.group("indent"), opening.group("fence"), opening.group("info")
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = FENCE.match(lines[j])
            if closing and closing.group("fence").startswith(fence[0] * len(fence)) and not closing.group("info"):
                break
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        yield Block(path, i + 1, info.strip(), "\n".join(body))
        i = j + 1


def logical_lines(text: str, *, prompted_only: bool = False) -> Iterator[tuple[int, str]]:
    """Shell lines, with ``\\`` continuations joined and ``$ `` prompts removed; (offset in the block, line).
    ``prompted_only``: a transcript (console, text), where only the lines after a ``$ `` prompt are commands."""
    pending, start = "", 0
    for offset, raw in enumerate(text.splitlines()):
        line = raw.rstrip()
        if not pending:
            start = offset
            stripped = line.lstrip()
            if stripped.startswith("$ "):
                line = stripped[2:]
            elif prompted_only:
                continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def commands_in(line: str, names: set[str] | None = None) -> Iterator[list[str]]:
    """Each olvf command of a shell line as its words: a command named ``olvf-...`` (after a path or not) at the
    start of the line or after ``&&``, ``;``, ``|``; leading ``VAR=value`` assignments are skipped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: not a shell line (prose in a text block)
        return
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token in SEPARATORS or (token and set(token) <= set("&|;<>()")):
            words = segment
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words = words[1:]
            if words:
                name = words[0].rsplit("/", 1)[-1]
                if name.startswith("olvf-") and (names is None or name in names):
                    yield [name, *words[1:]]
            segment = []
        else:
            segment.append(token)


SCRIPT_LANGUAGES = {"", "bash", "sh", "shell"}  # every line is a command
TRANSCRIPT_LANGUAGES = {"console", "text", "shell-session"}  # commands after a "$ " prompt, the rest is output


@dataclass(frozen=True)
class Example:
    where: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.words)}"


def shown_commands() -> list[Example]:
    """Every olvf command in a shell code block of the README and the docs (read when the tests are collected)."""
    found = []
    for path in DOCUMENTS:
        for block in code_blocks(path):
            if block.language not in SCRIPT_LANGUAGES | TRANSCRIPT_LANGUAGES:
                continue
            for offset, line in logical_lines(block.text, prompted_only=block.language in TRANSCRIPT_LANGUAGES):
                for words in commands_in(line):
                    if words[0] == "olvf-jetson":  # the Docker image's name, not a command
                        continue
                    found.append(Example(f"{block.where}+{offset + 1}", tuple(words)))
    return found


EXAMPLES = shown_commands()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_shown_command_parses_against_its_real_parser(example: Example) -> None:
    scripts = console_scripts()
    name, *args = example.words
    assert name in scripts, f"{example}: {name} is not a command of olvf (commands: {', '.join(sorted(scripts))})"
    parents = [a for a in args if a in BUNDLE_PARENTS]
    assert not parents, f"{example}: {parents[0]!r} holds the bundles and is none; write engines/demo or engines/site"
    module = importlib.import_module(scripts[name].module)
    parser, rest = parser_for(module, args)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(rest)
    except SystemExit as exc:
        if exc.code == 0 and ({"-h", "--help", "--version"} & set(rest)):
            return
        pytest.fail(f"{example}\n  {parser.prog} refuses it: {errors.getvalue().strip()}")


def test_the_examples_were_found() -> None:
    """The extraction itself: the Quick start's three commands, and at least one example of every command."""
    readme = [e for e in EXAMPLES if e.where.startswith("README.md")]
    assert [e.words[0] for e in readme[:3]] == ["olvf-export", "olvf-phantom", "olvf-infer"], readme[:3]
    shown = {e.words[0] for e in EXAMPLES} | {" ".join(e.words[:2]) for e in EXAMPLES}
    missing = sorted(set(console_scripts()) - shown)
    assert not missing, f"commands without an example in the README or docs: {', '.join(missing)}"


def test_the_extractor_reads_chains_prompts_continuations_and_paths() -> None:
    line = "X=1 .venv/bin/olvf-infer --bundle engines/demo a.dcm && cd b; $PWD/olvf-phantom p.dcm  # note"
    assert list(commands_in(line)) == [
        ["olvf-infer", "--bundle", "engines/demo", "a.dcm"],
        ["olvf-phantom", "p.dcm"],
    ]
    lines = list(logical_lines("$ olvf-serve status \\\n    --spool s\nolvf-serve spool s: node running"))
    assert lines[0] == (0, "olvf-serve status      --spool s")


# --- configuration files and Python shown ------------------------------------------------------------


def _blocks(language: str | None = None, title: str | None = None) -> list[Block]:
    return [
        block
        for path in DOCUMENTS
        for block in code_blocks(path)
        if (language is None or block.language == language) and (title is None or block.title == title)
    ]


def _node_config() -> ModuleType:
    """Where olvf-serve's configuration is checked (the one module path this file names; repoint it if it moves)."""
    return importlib.import_module("olvf.runtime.node.config")


def _bundle_config() -> ModuleType:
    """Where a bundle's intended use is read (the one module path this file names for it)."""
    return importlib.import_module("olvf.runtime.bundle.config")


SERVE_CONFIGS = _blocks(title="serve.toml")
INTENDED_USES = _blocks(title="use.json")


@pytest.mark.parametrize("block", SERVE_CONFIGS, ids=[b.where for b in SERVE_CONFIGS])
def test_shown_serve_config_is_accepted(block: Block, tmp_path: Path) -> None:
    """Read as ``olvf-serve --config`` reads it: unknown keys and wrong values fail."""
    config = _node_config()
    path = tmp_path / "serve.toml"
    path.write_text(block.text, encoding="utf-8")
    settings = config.read_config_file(path)
    node = config.build_config(settings, base=tmp_path)
    assert node.destination and (node.allowed or node.allow_any), block.where


@pytest.mark.parametrize("block", INTENDED_USES, ids=[b.where for b in INTENDED_USES])
def test_shown_intended_use_is_accepted(block: Block) -> None:
    """Read as ``olvf-export --intended-use DIR FILE`` reads it: a misspelt key fails."""
    use = _bundle_config().IntendedUse.from_dict(json.loads(block.text))
    assert use.modalities, block.where


def test_the_config_examples_were_found() -> None:
    assert SERVE_CONFIGS and INTENDED_USES


PYTHON = _blocks(language="python")


def _importable(module: ModuleType, name: str) -> bool:
    """``from module import name``: an attribute, or a submodule."""
    if hasattr(module, name):
        return True
    try:
        importlib.import_module(f"{module.__name__}.{name}")
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_shown_python_is_valid_and_its_olvf_imports_exist(block: Block) -> None:
    tree = ast.parse(block.text, filename=block.where)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "olvf":
                    importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "olvf":
            module = importlib.import_module(node.module)
            missing = [a.name for a in node.names if not _importable(module, a.name)]
            assert not missing, f"{block.where}: {node.module} has no {', '.join(missing)}"
