"""How an ``olvf-serve`` node is set up: from flags, a TOML config file, or both (flags win).

Every setting is checked here, before the bundle is loaded or a port opened,
and a wrong one is one line naming the setting and the fix.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olvf.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, from PyPI (a dependency on Python 3.10 only)
    import tomli as tomllib

DEFAULT_AE_TITLE = "OLVF"
DEFAULT_PORT = 11112
GPU_BATCH = 8  # studies per ensemble call on a GPU, where a batch costs far less per study than one alone
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5: 16 characters of the default repertoire, no '\'


def ae_title(text: str, what: str) -> str:
    title = text.strip()
    if not _AE_TITLE.match(title):
        raise UsageError(f"{what} {text!r} is not an AE title: 1 to 16 printable ASCII characters, no backslash")
    return title


def _port(value: Any, what: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} {value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise UsageError(f"{what} {port} is not a port number (1-65535)")
    return port


@dataclass(frozen=True)
class Destination:
    """Where results are sent: the PACS's AE title, host and DICOM port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        match = re.fullmatch(r"(?P<ae>[^@]+)@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d+)", text.strip())
        if not match:
            raise UsageError(f"--send-to {text!r}: write it as AE@host:port, e.g. PACS@10.0.0.5:104")
        host = match["host"].strip("[]")
        return cls(ae_title(match["ae"], "--send-to AE title"), host, _port(match["port"], "--send-to port"))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Peer:
    """A calling AE title allowed to send, from any host or from one host only."""

    ae_title: str
    host: str | None = None

    @classmethod
    def parse(cls, text: str) -> Peer:
        ae, _, host = text.strip().partition("@")
        return cls(ae_title(ae, "--allow AE title"), host.strip() or None)

    def admits(self, calling: str, address: str) -> bool:
        return calling.strip() == self.ae_title and (self.host is None or self.host == address)

    def __str__(self) -> str:
        return self.ae_title if self.host is None else f"{self.ae_title}@{self.host}"


def _upper(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(v).strip().upper() for v in values)


@dataclass(frozen=True)
class ScreeningRule:
    """Which received images are screened; the defaults fit lateral lumbar radiographs (CR or DX).

    Modality (0008,0060) must be one of ``modalities``. Body Part Examined
    (0018,0015) and View Position (0018,5101), when the image states them,
    must be among ``body_parts`` and ``views``; many X-ray units leave them
    empty, so an image without them is screened unless ``require_body_part``
    / ``require_view`` say otherwise. Everything screened then meets the
    bundle's intended-use gate in the pipeline (header, anatomy, domain).

    An image this rule skips, or the gate refuses, is **not assessed**: with
    ``not_assessed_results`` (the default) the node sends the PACS a Secondary
    Capture and an SR that say so and hold no findings, so that a physician
    waiting for a result does not read silence as "no fracture"; without it,
    such an image is acknowledged to the sender and set aside with the reason
    (state ``ignored``), and nothing is sent. A PACS that forwards whole CT or
    MR series to the node would get one such result per image: route only the
    radiographs to it. There is no setting that gives findings outside the
    intended use.
    """

    modalities: tuple[str, ...] = ("CR", "DX")
    # PS3.16 Annex L defined terms that include the lumbar spine.
    body_parts: tuple[str, ...] = ("LSPINE", "LSSPINE", "TLSPINE", "SPINE")
    views: tuple[str, ...] = ("LL", "RL", "LATERAL")  # PS3.3 C.8.11.5 ViewPosition: left / right lateral
    require_body_part: bool = False
    require_view: bool = False
    not_assessed_results: bool = True

    def reason_to_skip(self, modality: str, body_part: str, view: str) -> str | None:
        """None when the image is to be screened, else why not (no patient data: only these coded values)."""
        modality, body_part, view = (v.strip().upper() for v in (modality, body_part, view))
        if modality not in self.modalities:
            return f"modality {modality or '(none)'} is not screened (screened: {', '.join(self.modalities)})"
        if body_part and body_part not in self.body_parts:
            return f"body part {body_part} is not screened (screened: {', '.join(self.body_parts)})"
        if not body_part and self.require_body_part:
            return "no body part examined stated, and the rule requires one"
        if view and view not in self.views:
            return f"view position {view} is not lateral (screened: {', '.join(self.views)})"
        if not view and self.require_view:
            return "no view position stated, and the rule requires one"
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Sending results: wait ``first_delay_s`` after a failure, doubling up to ``max_delay_s``;
    after ``max_attempts`` failed attempts the result goes to the dead-letter folder."""

    first_delay_s: float = 5.0
    max_delay_s: float = 300.0
    max_attempts: int = 30

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** max(0, failures - 1))


@dataclass(frozen=True)
class NodeConfig:
    bundle: Path
    spool: Path
    destination: Destination
    ae_title: str = DEFAULT_AE_TITLE
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    allowed: tuple[Peer, ...] = ()
    allow_any: bool = False
    rule: ScreeningRule = field(default_factory=ScreeningRule)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    batch: int | None = None  # None: auto_batch() once the backend is known
    backend: str = "auto"
    device: str | None = None
    spool_limit_mb: int | None = None  # None: the disk's free space is the limit
    triton_url: str | None = None  # with backend "triton": the server's gRPC address
    triton_priority: str = "er"  # the requests' priority on a shared Triton server (er before routine)

    def admits(self, calling: str, address: str) -> bool:
        return self.allow_any or any(peer.admits(calling, address) for peer in self.allowed)


def auto_batch(device: str) -> tuple[int, str]:
    """Studies per ensemble call for the device the ensemble runs on, and why.

    On a CPU the ensemble's cost grows with the crops (measured: the same per
    study at batch 8 as at batch 1), so batching only holds back the first
    studies of a burst until the last is done; on a GPU a batch costs far
    less per study than one alone.
    """
    if device == "cpu":
        return 1, "auto: the ensemble runs on the CPU, where a batch costs as much per study and delays results"
    return GPU_BATCH, f"auto: the ensemble runs on {device}, where studies that arrive together share one call"


# Keys of the config file; each is also a flag (--send-to for send_to, ...).
_TOP = {
    "bundle", "spool", "send_to", "ae_title", "host", "port", "allow", "allow_any", "batch", "backend", "device",
    "spool_limit_mb", "triton_url", "triton_priority",
}  # fmt: skip
_SECTIONS = {
    "screen": {"modalities", "body_parts", "views", "require_body_part", "require_view", "not_assessed_results"},
    "retry": {"first_delay_s", "max_delay_s", "max_attempts"},
}


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML file, checked for unknown keys (a typo must not silently fall back to a default)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path}: not valid TOML ({exc})") from None
    unknown = [k for k in data if k not in _TOP and k not in _SECTIONS]
    for section, keys in _SECTIONS.items():
        if section in data:
            if not isinstance(data[section], dict):
                raise UsageError(f"--config {path}: [{section}] must be a table")
            unknown += [f"{section}.{k}" for k in data[section] if k not in keys]
    if unknown:
        known = sorted(_TOP | {f"{s}.{k}" for s, keys in _SECTIONS.items() for k in keys})
        raise UsageError(f"--config {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return data


def _positive(value: Any, what: str, kind: type = int) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} {value!r} is not a number") from None
    if number <= 0:
        raise UsageError(f"{what} must be greater than 0, got {value!r}")
    return number


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{what} must be a list of strings")
    return value


def _given(settings: Mapping[str, Any], key: str, default: Any) -> Any:
    value = settings.get(key)
    return default if value is None or value == "" else value


def _triton_url(settings: Mapping[str, Any]) -> str | None:
    url = settings.get("triton_url") or None
    backend = str(settings.get("backend") or "auto")
    if backend == "triton" and not url:
        raise UsageError("backend triton needs --triton-url HOST:PORT (the server's gRPC port, usually 8001)")
    if url and backend != "triton":
        raise UsageError("--triton-url goes with --backend triton")
    return None if url is None else str(url)


def _triton_priority(settings: Mapping[str, Any]) -> str:
    priority = str(settings.get("triton_priority") or "er")
    if priority not in ("er", "routine"):
        raise UsageError(f"--triton-priority must be er or routine, got {priority!r}")
    return priority


def build_config(settings: Mapping[str, Any], *, base: Path | None = None) -> NodeConfig:
    """A checked :class:`NodeConfig` from merged settings (file values overridden by flags).

    ``base``: the config file's folder, against which relative paths in the file are read.
    """

    def path(key: str) -> Path:
        value = settings.get(key)
        if value in (None, ""):
            raise UsageError(f"--{key.replace('_', '-')} is required (a flag or '{key} = ...' in --config)")
        p = Path(value)
        return p if p.is_absolute() or base is None else base / p

    if not settings.get("send_to"):
        raise UsageError("--send-to AE@host:port is required: where the results go (your PACS)")
    allowed = tuple(Peer.parse(text) for text in _strings(settings.get("allow") or [], "allow"))
    allow_any = bool(settings.get("allow_any", False))
    if not allowed and not allow_any:
        raise UsageError(
            "no sender is allowed: give --allow AE[@host] for each modality or PACS that sends to this node "
            "(or --allow-any to accept every calling AE title, for a closed network only)"
        )
    screen = dict(settings.get("screen") or {})
    given: dict[str, Any] = {
        k: _upper(_strings(screen[k], f"screen.{k}")) for k in ("modalities", "body_parts", "views") if k in screen
    }
    given.update(
        {k: bool(screen[k]) for k in ("require_body_part", "require_view", "not_assessed_results") if k in screen}
    )
    rule = ScreeningRule(**given)
    retry_settings = dict(settings.get("retry") or {})
    retry = RetryPolicy(
        **{
            k: _positive(retry_settings[k], f"retry.{k}", float)
            for k in ("first_delay_s", "max_delay_s")
            if k in retry_settings
        },
        **(
            {"max_attempts": _positive(retry_settings["max_attempts"], "retry.max_attempts")}
            if "max_attempts" in retry_settings
            else {}
        ),
    )
    if retry.max_delay_s < retry.first_delay_s:
        raise UsageError("retry.max_delay_s must not be less than retry.first_delay_s")
    device = settings.get("device")
    return NodeConfig(
        bundle=path("bundle"),
        spool=path("spool"),
        destination=Destination.parse(str(settings["send_to"])),
        ae_title=ae_title(str(settings.get("ae_title") or DEFAULT_AE_TITLE), "--ae-title"),
        host=str(settings.get("host") or "0.0.0.0"),
        port=_port(_given(settings, "port", DEFAULT_PORT), "--port"),
        allowed=allowed,
        allow_any=allow_any,
        rule=rule,
        retry=retry,
        batch=None if _given(settings, "batch", None) is None else _positive(settings["batch"], "--batch"),
        backend=str(settings.get("backend") or "auto"),
        device=None if device in (None, "") else str(device),
        triton_url=_triton_url(settings),
        triton_priority=_triton_priority(settings),
        spool_limit_mb=(
            None
            if _given(settings, "spool_limit_mb", None) is None
            else _positive(settings["spool_limit_mb"], "--spool-limit-mb")
        ),
    )
