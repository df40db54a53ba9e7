"""mkdocs hook: the reference tables, generated from olvf's own code each time the site is built.

A page asks for a table with a marker, ``<!-- olvf:NAME -->`` (or ``<!-- olvf:NAME
ARGUMENT -->``; alone on a line for a table); :func:`on_page_markdown` replaces it with what
the code says now, so the CLIs' help, the exit codes, the DICOM lists, the
manifest schema and the limits cannot drift from the code. An unknown marker,
or a generator that fails because the code changed, fails the build.

The command-line parsers are found through the installed distribution's
console-script entry points (the module of each, and its ``build_parser()``
and ``build_<name>_parser()`` functions), never through a module path. Every
other module is named once, in :data:`MODULES`: the one place to repoint when
a module moves.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import inspect
import json
import os
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.metadata import distributions
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from mkdocs.exceptions import PluginError

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTION = "olvf"
HELP_COLUMNS = "100"  # --help is wrapped at this width, whatever the terminal that builds the site
VERIFICATION = "1.2.840.10008.1.1"  # the Verification SOP Class (PS3.4 A.4), C-ECHO

# Where the code keeps what the pages show (role -> module). Repoint here when a module moves.
MODULES: dict[str, str] = {
    "package": "olvf",
    "errors": "olvf.errors",
    "cli_main": "olvf.cli_main",
    "vocabulary": "olvf.vocabulary",
    "manifest": "olvf.runtime.bundle.manifest",
    "bundle_config": "olvf.runtime.bundle.config",
    "tolerances": "olvf.runtime.bundle.tolerances",
    "runners": "olvf.runtime.runners",
    "verified_routes": "olvf.runtime.runners.verified_routes",
    "report": "olvf.runtime.writers.report",
    "dicom_codes": "olvf.runtime.writers.dicom_codes",
    "dicom_results": "olvf.runtime.writers.dicom_results",
    "dicom_sc": "olvf.runtime.writers.dicom_sc",
    "dicom_sr": "olvf.runtime.writers.dicom_sr",
    "dicom_source": "olvf.runtime.writers.dicom_source",
    "node_config": "olvf.runtime.node.config",
    "node_scp": "olvf.runtime.node.scp",
    "node_sender": "olvf.runtime.node.sender",
}


def _module(role: str) -> ModuleType:
    """The module that plays ``role`` (see :data:`MODULES`), imported now."""
    return importlib.import_module(MODULES[role])


# --- markdown helpers ------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(value: Any) -> str:
    return f"`{value}`" if value not in (None, "") else ""


def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(str(uid)).name
    return name if name and name != str(uid) else "(unnamed)"


def _comments(obj: Any) -> dict[str, str]:
    """``NAME -> comment`` from the source of a module or class: the ``#:`` lines above an assignment or a field,
    else the ``#`` comment at the end of its line."""
    try:
        lines = inspect.getsource(obj).splitlines()
    except (OSError, TypeError):
        return {}
    notes: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#:"):
            above.append(stripped[2:].strip())
            continue
        match = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::[^=]*)?=?.*?(?:#\s*(.*))?$", line)
        if match and not stripped.startswith(("#", "def ", "class ", "@", "return", "raise")):
            name, tail = match.group(1), match.group(2)
            if above:
                notes[name] = _markdown(" ".join(above))
            elif tail and not tail.startswith(("noqa", "type:")):
                notes[name] = _markdown(tail.strip())
        above = []
    return notes


def _markdown(text: str) -> str:
    """reST roles and literals of docstrings (``x``, :mod:`x`) as Markdown code."""
    text = re.sub(r":(?:mod|func|class|meth|attr|data):`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _paragraphs(doc: str | None) -> str:
    """A docstring's paragraphs, each on one line."""
    text = inspect.cleandoc(doc or "")
    return "\n\n".join(_markdown(" ".join(p.split())) for p in text.split("\n\n") if p.strip())


def _first_line(doc: str | None) -> str:
    """A docstring's first paragraph, on one line."""
    return _markdown(" ".join((doc or "").strip().split("\n\n")[0].split()))


# --- command lines -----------------------------------------------------------------------------------


def _installed() -> Any:
    """The installed distribution (its ``.dist-info``, as pip writes it), not a stale ``olvf.egg-info`` that an
    in-tree build left in the working folder, which ``python -m`` would otherwise find first on ``sys.path``."""
    found = list(distributions(name=DISTRIBUTION))
    if not found:
        raise PluginError(f"{DISTRIBUTION} is not installed: pip install -e '.[docs]'")
    installed = [d for d in found if str(getattr(d, "_path", "")).endswith(".dist-info")]
    return (installed or found)[0]


def _console_scripts() -> list[Any]:
    return [ep for ep in _installed().entry_points if ep.group == "console_scripts"]


def _parsers(module: ModuleType) -> list[tuple[str, Callable[[], argparse.ArgumentParser]]]:
    """The module's ``build_parser`` first, then each ``build_<sub>_parser`` (``olvf-serve status``, ...)."""
    found = []
    for name, function in inspect.getmembers(module, inspect.isfunction):
        match = re.fullmatch(r"build_(?:(\w+)_)?parser", name)
        if match and function.__module__ == module.__name__:
            found.append((match.group(1) or "", function))
    return sorted(found, key=lambda item: (item[0] != "", item[0]))


@contextlib.contextmanager
def _help_width() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in ("COLUMNS", "NO_COLOR")}
    os.environ["COLUMNS"], os.environ["NO_COLOR"] = HELP_COLUMNS, "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def gen_cli_summary(_: str) -> str:
    rows = []
    for ep in _console_scripts():
        module = importlib.import_module(ep.module)
        for sub, build in _parsers(module):
            parser = build()
            command = f"{ep.name} {sub}".strip()
            rows.append((f"[`{command}`](#{command.replace(' ', '-')})", _first_line(parser.description)))
    return _table(("command", "what it does"), rows)


def gen_cli(_: str) -> str:
    parts = []
    with _help_width():
        for ep in _console_scripts():
            module = importlib.import_module(ep.module)
            parsers = _parsers(module)
            if not parsers:
                raise PluginError(f"{ep.name}: its module {ep.module} has no build_parser()")
            for sub, build in parsers:
                command = f"{ep.name} {sub}".strip()
                parts.append(f"## {command}\n\n```text\n{build().format_help().rstrip()}\n```")
    return "\n\n".join(parts)


# --- exit codes --------------------------------------------------------------------------------------


def _subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def gen_exit_codes(_: str) -> str:
    errors = _module("errors")
    rows: dict[int, tuple[str, str, str]] = {0: ("0", "", "success")}
    root = errors.OlvfError
    for cls in [root, *_subclasses(root)]:
        if cls.__module__ != errors.__name__:
            continue
        code = int(cls.exit_code)
        meaning = _first_line(cls.__doc__)
        if cls is root:
            meaning += " Any such error without a code of its own."
        rows.setdefault(code, (str(code), f"`{cls.__name__}`", meaning))
    # Codes a command returns itself (NAME_EXIT / EXIT_NAME constants of an entry point's module).
    for ep in _console_scripts():
        module = importlib.import_module(ep.module)
        notes = _comments(module)
        for name, value in vars(module).items():
            if isinstance(value, int) and not isinstance(value, bool) and re.fullmatch(r"\w*EXIT\w*", name):
                rows.setdefault(value, (str(value), f"`{ep.name}`: `{name}`", notes.get(name, "")))
    cli_main = _module("cli_main")
    notes = _comments(cli_main)
    for name in ("INTERRUPTED", "TERMINATED"):
        value = int(getattr(cli_main, name))
        meaning = f"{name.lower()} ({notes.get(name, '')}); nothing half-written is left"
        rows.setdefault(value, (str(value), f"`{name}`", meaning))
    return _table(("code", "raised as", "meaning"), (rows[code] for code in sorted(rows)))


# --- the bundle ---------------------------------------------------------------------------------------


def _dataclasses_below(cls: type, seen: list[type]) -> None:
    if cls in seen:
        return
    seen.append(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        for inner in _types_in(hints[f.name]):
            if isinstance(inner, type) and dataclasses.is_dataclass(inner):
                _dataclasses_below(inner, seen)


def _types_in(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _types_in(arg)


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return f"defaults of `{type(value).__name__}`"
    if value is None:
        return "none"
    try:
        return f"`{json.dumps(value)}`"  # as the JSON (or TOML) file writes it: tuples are lists
    except TypeError:
        return f"`{value!r}`"


def _schema(root: type, *, json_names: dict[str, str] | None = None) -> str:
    classes: list[type] = []
    _dataclasses_below(root, classes)
    parts = []
    for cls in classes:
        notes = _comments(cls)
        rows = [
            (f"`{f.name}`", f"`{f.type}`", _default(f), notes.get(f.name, ""))
            for f in dataclasses.fields(cls)
            if not f.name.startswith("_")
        ]
        title = cls.__name__ if cls is not root else f"{cls.__name__} (the top level)"
        table = _table(("key", "type", "default", "note"), rows)
        parts.append(f"### {title}\n\n{_paragraphs(cls.__doc__)}\n\n{table}")
    return "\n\n".join(parts)


def gen_manifest_schema(_: str) -> str:
    manifest = _module("manifest")
    head = _table(
        ("constant", "value"),
        [
            ("file name", _code(manifest.MANIFEST_NAME)),
            ("`kind`", _code(manifest.Manifest.__dataclass_fields__["kind"].default)),
            ("schema version written", _code(manifest.SCHEMA_VERSION)),
            ("schema versions read", ", ".join(_code(v) for v in manifest.READABLE_SCHEMAS)),
            ("graph precisions", ", ".join(_code(v) for v in manifest.PRECISIONS)),
            ("graph formats", ", ".join(_code(v) for v in manifest.GRAPH_FORMATS)),
            ("integrity record key", _code(manifest.INTEGRITY_KEY)),
        ],
    )
    return head + "\n\n" + _schema(manifest.Manifest)


def gen_intended_use_defaults(_: str) -> str:
    return _schema(_module("bundle_config").IntendedUse)


# --- limits, backends, routes --------------------------------------------------------------------------


def gen_tolerances(_: str) -> str:
    tol = _module("tolerances")
    notes = _comments(tol.Tolerances)
    classifier_rows = [
        (f"`{precision}`", *(getattr(limits, f.name) for f in dataclasses.fields(limits)))
        for precision, limits in tol.CLASSIFIERS.items()
    ]
    names = [f.name for f in dataclasses.fields(tol.Tolerances)]
    parts = [
        "### Classifiers against their FP32 reference\n",
        _table(("precision", *names), classifier_rows),
        "\n" + "\n".join(f"- `{n}`: {notes.get(n, '')}" for n in names),
        "\n### Detector boxes against their reference\n",
    ]
    notes = _comments(tol.DetectorTolerances)
    names = [f.name for f in dataclasses.fields(tol.DetectorTolerances)]
    parts.append(
        _table(
            ("precision", *names),
            [(f"`{p}`", *(getattr(d, n) for n in names)) for p, d in tol.DETECTORS.items()],
        )
    )
    parts.append("\n" + "\n".join(f"- `{n}`: {notes.get(n, '')}" for n in names))
    parts.append(
        f"\nA top-1 flip between two classes closer than {tol.TOP1_TIE_FACTOR:g} times the probability "
        "tolerance counts as rounding (`TOP1_TIE_FACTOR`)."
    )
    parts.append("\n### Reduced-precision CPU routes on a labelled set\n")
    notes = _comments(tol.RouteLimits)
    names = [f.name for f in dataclasses.fields(tol.RouteLimits)]
    parts.append(
        _table(("route", *names), [(f"`{r}`", *(getattr(lim, n) for n in names)) for r, lim in tol.ROUTES.items()])
    )
    parts.append("\n" + "\n".join(f"- `{n}`: {notes.get(n, '')}" for n in names))
    parts.append(
        f"\nA labelled set judges a route only with at least {tol.MIN_GATE_VERTEBRAE_PER_CLASS} vertebrae of each "
        f"class ({', '.join(tol.GATE_CLASSES)}; `MIN_GATE_VERTEBRAE_PER_CLASS`)."
    )
    return "\n".join(parts)


def gen_backends(_: str) -> str:
    names = _module("runners").backend_names()
    return "Backend names: " + ", ".join(f"`{n}`" for n in ("auto", *names)) + "."


def gen_routes(_: str) -> str:
    routes = _module("verified_routes")
    rows = [
        (
            f"`{r.name}`",
            f"`{r.backend}`",
            f"`{r.precision}`",
            f"`{r.graph_precision}`",
            "yes" if r.name in routes.REDUCED else "no",
            r.label,
        )
        for r in routes.ROUTES.values()
    ]
    order = ", ".join(f"`{name}`" for name in routes.PREFERENCE)
    return (
        _table(("route", "backend", "precision", "graph it runs", "must be verified", "what"), rows)
        + f"\n\nUnder `auto`, verified routes are tried fastest first by the speed-up recorded when they were "
        f"verified; where none is recorded, in this order: {order}."
    )


# --- inputs and outputs -----------------------------------------------------------------------------------


def gen_labels_columns(_: str) -> str:
    vocabulary = _module("vocabulary")
    return _table(
        ("what", "value"),
        [
            ("file name inside a set folder", _code(vocabulary.LABELS_NAME)),
            ("required columns", ", ".join(_code(c) for c in vocabulary.REQUIRED_COLUMNS)),
            ("optional box columns (all four or none)", ", ".join(_code(c) for c in vocabulary.BOX_COLUMNS)),
            ("levels", ", ".join(_code(c) for c in vocabulary.LEVELS)),
            ("classes", ", ".join(_code(c) for c in vocabulary.CLASSES)),
        ],
    )


def gen_vocabulary(_: str) -> str:
    vocabulary = _module("vocabulary")
    notes = _comments(vocabulary)
    rows = [
        (f"`{name}`", ", ".join(_code(v) for v in value), notes.get(name, ""))
        for name, value in vars(vocabulary).items()
        if name.isupper() and isinstance(value, tuple)
    ]
    return _table(("name", "values", "meaning"), rows)


def gen_report_schema_id(_: str) -> str:
    return _code(_module("report").SCHEMA)


def gen_serve_config(_: str) -> str:
    config = _module("node_config")
    node_fields = {f.name: f for f in dataclasses.fields(config.NodeConfig)}
    flag_of = {"send_to": "destination", "allow": "allowed"}
    top, sections = _serve_config_keys(config)
    rows = []
    for key in sorted(top):
        f = node_fields.get(flag_of.get(key, key))
        default = _default(f) if f is not None else ""
        if key == "batch":
            default = "1 when the ensemble runs on the CPU, else `" + str(config.GPU_BATCH) + "`"
        rows.append((f"`{key}`", f"`--{key.replace('_', '-')}`", default))
    parts = [_table(("key", "flag", "default"), rows)]
    classes = {"screen": config.ScreeningRule, "retry": config.RetryPolicy}
    for section, keys in sections.items():
        cls = classes[section]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        notes = _comments(cls)
        parts.append(f"\n`[{section}]`: {_first_line(cls.__doc__)}\n")
        parts.append(
            _table(
                ("key", "default", "note"),
                [(f"`{k}`", _default(fields[k]), notes.get(k, "")) for k in sorted(keys)],
            )
        )
    return "\n".join(parts)


def _serve_config_keys(config: ModuleType) -> tuple[set[str], dict[str, set[str]]]:
    """The config file's keys. Private in the module today (``_TOP``, ``_SECTIONS``): repoint to public names."""
    return set(config._TOP), {k: set(v) for k, v in config._SECTIONS.items()}


# --- DICOM ----------------------------------------------------------------------------------------------


def _codes_by_name(module: ModuleType) -> list[tuple[str, Any]]:
    from pydicom.sr.coding import Code

    found: list[tuple[str, Any]] = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, Code):
            found.append((name, value))
        elif isinstance(value, dict) and value and all(isinstance(v, Code) for v in value.values()):
            found += [(f'{name}["{key}"]', code) for key, code in value.items()]
    return found


def gen_dicom_private_codes(_: str) -> str:
    codes = _module("dicom_codes")
    listed = {id(c) for c in codes.PRIVATE_CODES}
    named = {id(code): name for name, code in _codes_by_name(codes)}
    rows = [(f"`{c.value}`", c.meaning, f"`{named.get(id(c), '')}`") for c in codes.PRIVATE_CODES]
    missing = [
        name
        for name, code in _codes_by_name(codes)
        if code.scheme_designator == codes.SCHEME and id(code) not in listed
    ]
    if missing:
        raise PluginError(f"private codes not in PRIVATE_CODES: {', '.join(missing)}")
    head = (
        f"Coding Scheme Designator `{codes.SCHEME}`, version `{codes.SCHEME_VERSION}`, declared in each SR's "
        "Coding Scheme Identification Sequence.\n\n"
    )
    return head + _table(("code value", "code meaning", "in the code"), rows)


def gen_dicom_standard_codes(_: str) -> str:
    codes = _module("dicom_codes")
    rows = [
        (f"`{code.scheme_designator}`", f"`{code.value}`", code.meaning, f"`{name}`")
        for name, code in _codes_by_name(codes)
        if code.scheme_designator != codes.SCHEME
    ]
    return _table(("scheme", "code value", "code meaning", "in the code"), rows)


def gen_dicom_written(_: str) -> str:
    sender, results = _module("node_sender"), _module("dicom_results")
    sc, sr = _module("dicom_sc"), _module("dicom_sr")
    rows = [
        (
            _uid_name(sender.SECONDARY_CAPTURE),
            f"`{sender.SECONDARY_CAPTURE}`",
            f"`{results.SC_NAME}`",
            sc.SC_SERIES_NUMBER,
            f"`{sc.MANUFACTURER}`",
        ),
        (
            _uid_name(sender.STRUCTURED_REPORT),
            f"`{sender.STRUCTURED_REPORT}`",
            f"`{results.SR_NAME}`",
            sr.SR_SERIES_NUMBER,
            f"`{sc.MANUFACTURER}`",
        ),
    ]
    return _table(("SOP class", "UID", "file (olvf-infer --dicom)", "series number", "Manufacturer"), rows)


def _scp_ae() -> Any:
    config = _module("node_config")
    return _module("node_scp").build_ae(SimpleNamespace(ae_title=config.DEFAULT_AE_TITLE))


def _scu_ae() -> Any:
    """The AE the sender associates with (``Sender._associate``), caught before it dials out."""
    import pynetdicom

    sender_module, config = _module("node_sender"), _module("node_config")
    caught: dict[str, Any] = {}

    def catch(ae: Any, *args: Any, **kwargs: Any) -> None:
        caught["ae"] = ae

    settings = SimpleNamespace(
        ae_title=config.DEFAULT_AE_TITLE, destination=SimpleNamespace(ae_title="PACS", host="pacs.invalid", port=104)
    )
    original = pynetdicom.AE.associate
    pynetdicom.AE.associate = catch  # type: ignore[method-assign,assignment]
    try:
        sender_module.Sender(settings, None, None, None)._associate()
    finally:
        pynetdicom.AE.associate = original  # type: ignore[method-assign]
    return caught["ae"]


def gen_conformance_scp_classes(_: str) -> str:
    scp = _module("node_scp")
    ae = _scp_ae()
    stored = dict(scp.RADIOGRAPH_CLASSES)
    rows = [(name, f"`{uid}`", "SCP", "stored, then screened") for uid, name in stored.items()]
    if any(str(c.abstract_syntax) == VERIFICATION for c in ae.supported_contexts):
        rows.append((_uid_name(VERIFICATION), f"`{VERIFICATION}`", "SCP", "C-ECHO answered success"))
    return _table(("SOP class", "UID", "role", "what the node does"), rows)


def gen_conformance_scp_other_classes(_: str) -> str:
    scp = _module("node_scp")
    ae = _scp_ae()
    others = sorted(
        (
            str(c.abstract_syntax)
            for c in ae.supported_contexts
            if str(c.abstract_syntax) not in scp.RADIOGRAPH_CLASSES and str(c.abstract_syntax) != VERIFICATION
        ),
        key=lambda uid: [int(p) for p in uid.split(".")],
    )
    rows = [(_uid_name(uid), f"`{uid}`") for uid in others]
    return (
        f"{len(others)} further storage SOP classes are accepted at association negotiation, so that a sender "
        f"learns the refusal as a C-STORE status it logs (0x{scp.SOP_CLASS_NOT_SUPPORTED:04X}), not as a rejected "
        "presentation context it may retry:\n\n"
        '??? note "The storage SOP classes negotiated and refused"\n\n'
        + "\n".join("    " + line for line in _table(("SOP class", "UID"), rows).splitlines())
    )


def gen_conformance_scp_syntaxes(_: str) -> str:
    scp = _module("node_scp")
    ae = _scp_ae()
    proposed = {
        tuple(map(str, c.transfer_syntax))
        for c in ae.supported_contexts
        if str(c.abstract_syntax) in scp.RADIOGRAPH_CLASSES
    }
    if len(proposed) != 1:
        raise PluginError(f"the radiograph classes are offered in {len(proposed)} different syntax lists")
    (syntaxes,) = proposed
    uncompressed = set(scp.UNCOMPRESSED)
    decoded = "where its decoder is installed (the base install has it)"
    rows = [(_uid_name(uid), f"`{uid}`", "always" if uid in uncompressed else decoded) for uid in syntaxes]
    return _table(("transfer syntax", "UID", "accepted"), rows)


def gen_conformance_scu_contexts(_: str) -> str:
    ae = _scu_ae()
    rows = [
        (
            _uid_name(str(c.abstract_syntax)),
            f"`{c.abstract_syntax}`",
            "SCU",
            "<br>".join(f"{_uid_name(str(t))} `{t}`" for t in c.transfer_syntax),
        )
        for c in ae.requested_contexts
    ]
    return _table(("SOP class", "UID", "role", "transfer syntaxes proposed, in order"), rows)


def gen_conformance_ae(_: str) -> str:
    config, sender = _module("node_config"), _module("node_sender")
    scp, scu = _scp_ae(), _scu_ae()
    rows = [
        ("default AE title (`--ae-title`)", f"`{config.DEFAULT_AE_TITLE}`", f"`{config.DEFAULT_AE_TITLE}`"),
        ("default port (`--port`)", f"`{config.DEFAULT_PORT}`", "the destination's (`--send-to AE@HOST:PORT`)"),
        ("called AE title must match", "yes" if scp.require_called_aet else "no", ""),
        ("calling AE title checked", "against `--allow` (or `--allow-any`)", ""),
        ("maximum simultaneous associations", scp.maximum_associations, "1 (one sender thread)"),
        ("results sent per association", "", sender.PER_ASSOCIATION),
        ("maximum PDU size received", scp.maximum_pdu_size or "unlimited", scu.maximum_pdu_size or "unlimited"),
        ("ACSE timeout (s)", scp.acse_timeout, scu.acse_timeout),
        ("DIMSE timeout (s)", scp.dimse_timeout, scu.dimse_timeout),
        ("network timeout (s)", scp.network_timeout, scu.network_timeout),
        ("connection timeout (s)", "", scu.connection_timeout),
        ("implementation class UID", f"`{scp.implementation_class_uid}`", f"`{scu.implementation_class_uid}`"),
        ("implementation version name", f"`{scp.implementation_version_name}`", f"`{scu.implementation_version_name}`"),
    ]
    return _table(("", "receiving (SCP)", "sending (SCU)"), rows)


def _status_meaning(code: int) -> str:
    from pynetdicom import status

    for table in (status.STORAGE_SERVICE_CLASS_STATUS, status.GENERAL_STATUS):
        if code in table:
            category, text = table[code]
            return f"{category}{': ' + text if text else ''}"
    return ""


def gen_conformance_scp_statuses(_: str) -> str:
    scp = _module("node_scp")
    names = ("SUCCESS", "OUT_OF_RESOURCES", "SOP_CLASS_NOT_SUPPORTED", "CANNOT_UNDERSTAND")
    return _table(
        ("status", "in the code", "PS3.4 meaning"),
        [(f"0x{getattr(scp, n):04X}", f"`{n}`", _status_meaning(getattr(scp, n))) for n in names],
    )


def gen_conformance_scu_statuses(_: str) -> str:
    sender = _module("node_sender")
    stored = sorted(sender.STORED)
    rows = [(f"0x{code:04X}", _status_meaning(code), "stored: marked sent, never sent again") for code in stored]
    ranges: list[list[int]] = []
    for code in range(0x10000):
        if code not in sender.STORED and sender.permanent(code):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    for low, high in ranges:
        label = f"0x{low:04X}" if low == high else f"0x{low:04X}-0x{high:04X}"
        rows.append((label, _status_meaning(low) if low == high else "", "permanent: dead-letter at once"))
    rows.append(("any other", "", "retried with back-off, then dead-letter"))
    return _table(("status", "PS3.4 meaning", "what the node does"), rows)


def gen_conformance_copied_attributes(_: str) -> str:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    source = _module("dicom_source")
    rows = []
    for module, keywords in (("Patient", source.PATIENT_KEYWORDS), ("Study", source.STUDY_KEYWORDS)):
        for keyword in keywords:
            tag = tag_for_keyword(keyword)
            if tag is None:
                raise PluginError(f"{keyword} is not a DICOM keyword")
            rows.append((module, keyword, f"({tag >> 16:04X},{tag & 0xFFFF:04X})", dictionary_VR(tag)))
    rows.append(("", "SpecificCharacterSet", "(0008,0005)", "CS"))
    return f'??? note "The {len(rows)} attributes copied from the source, as stored"\n\n' + "\n".join(
        "    " + line for line in _table(("level", "attribute", "tag", "VR"), rows).splitlines()
    )


# --- pages that are files elsewhere in the repository --------------------------------------------------


def gen_include(argument: str) -> str:
    path = (REPO / argument).resolve()
    if REPO not in path.parents or not path.is_file():
        raise PluginError(f"olvf:include {argument}: no such file in the repository")
    text = path.read_text(encoding="utf-8")
    return re.sub(r"\A# .*\n", "", text)  # the page has its own title


def gen_version(_: str) -> str:
    return _module("package").__version__


GENERATORS: dict[str, Callable[[str], str]] = {
    name[len("gen_") :].replace("_", "-"): function
    for name, function in dict(globals()).items()
    if name.startswith("gen_") and callable(function)
}
MARKER = re.compile(r"<!-- olvf:([a-z0-9-]+)(?: +(\S+))? -->")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        name, argument = match.group(1), match.group(2) or ""
        generator = GENERATORS.get(name)
        if generator is None:
            raise PluginError(f"{page.file.src_uri}: unknown marker olvf:{name} (known: {', '.join(GENERATORS)})")
        try:
            return generator(argument)
        except PluginError:
            raise
        except Exception as exc:  # the code moved or changed: say where, fail the build
            raise PluginError(f"{page.file.src_uri}: olvf:{name} failed: {type(exc).__name__}: {exc}") from exc

    return MARKER.sub(replace, markdown)
