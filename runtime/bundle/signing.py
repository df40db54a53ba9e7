"""Bundle signatures: a hospital signs the bundle it validated, and olvf runs only bundles signed by a key it trusts.

A signature is ``signature.json`` in the bundle: an Ed25519 signature (the
``cryptography`` package) over the canonical bytes of the manifest as it was
signed (:func:`olvf.runtime.bundle.manifest.canonical_manifest`), that manifest
itself (the *signed base*), and the signer's public key. The manifest lists
the sha256 of every graph, so the signature covers the graphs too.

    openssl genpkey -algorithm ed25519 -out olvf-signing.pem              # private: keep it off the devices
    openssl pkey -in olvf-signing.pem -pubout -out olvf-signing.pub.pem   # public: give it to the devices
    olvf-export ... --sign olvf-signing.pem                               # sign at export
    olvf-export --resign engines/ --sign olvf-signing.pem                 # or sign (again) an existing bundle
    OLVF_TRUSTED_KEYS=/etc/olvf/keys olvf-infer --bundle engines/ ...     # refuse anything else

**Changes olvf makes on a device stay verifiable as recorded local
additions to the signed base.** A device builds TensorRT engines for its own
GPU, which no signer can build in advance: they are added to ``engines`` (and
their files to ``files``, their figures to ``parity`` under ``tensorrt:``).
When a bundle is verified, the current manifest must equal the signed base
except for these additions, and each engine must have been built from a graph
whose sha256 is the signed one; the report lists them as local additions.
Every other change (an operating point written by ``olvf-validate
--write-operating-point``, anything edited) voids the signature until the
bundle is signed again with ``--resign``: the operating point decides who is
sent to MRI, and changing it is the signer's decision.

Trust: the keys in ``OLVF_TRUSTED_KEYS`` (files or folders of PEM or OpenSSH
public keys, separated like PATH), or given to :func:`olvf.load` /
``olvf-infer --trusted-keys``. When any are set, a bundle that is unsigned,
signed by another key, or changed since signing is refused (exit code 4).
When none are set, a signature present is still checked: a broken one is
refused (the bundle was tampered with), a void one (changed since signing) is
reported but does not stop the run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import olvf.json_text as json_text
from olvf.errors import BackendError, BundleError, UsageError
from olvf.runtime.bundle.manifest import INTEGRITY_KEY, canonical_manifest

SIGNATURE_NAME = "signature.json"
SCHEMA = "olvf-signature/1"
TRUST_VARIABLE = "OLVF_TRUSTED_KEYS"
PASSPHRASE_VARIABLE = "OLVF_KEY_PASSPHRASE"
LOCAL_KEYS = ("engines",)  # what a device may add to a signed manifest, with its files and parity entries
ENGINE_PARITY_PREFIX = "tensorrt:"
_KEY_SUFFIXES = (".pem", ".pub")


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise BackendError(
            "bundle signatures need the cryptography package (a base dependency of olvf): pip install cryptography"
        ) from None
    return ed25519


def key_id(public_raw: bytes) -> str:
    """A short name for a public key: the start of the sha256 of its 32 raw bytes."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _public_raw(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- keys ---------------------------------------------------------------------------


def load_private_key(path: str | os.PathLike[str]) -> Any:
    """An Ed25519 private key from a PEM file (encrypted ones with the passphrase in OLVF_KEY_PASSPHRASE)."""
    ed25519 = _crypto()
    from cryptography.hazmat.primitives import serialization

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--sign {path}: cannot be read ({exc.strerror or exc})") from None
    passphrase = os.environ.get(PASSPHRASE_VARIABLE)
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() if passphrase else None)
    except TypeError:
        raise UsageError(f"--sign {path}: the key is encrypted; put its passphrase in {PASSPHRASE_VARIABLE}") from None
    except ValueError as exc:
        raise UsageError(f"--sign {path}: not a PEM private key ({exc}); make one with openssl genpkey") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UsageError(f"--sign {path}: not an Ed25519 key; make one with: openssl genpkey -algorithm ed25519")
    return key


def _public_keys_in(path: Path) -> list[bytes]:
    from cryptography.hazmat.primitives import serialization

    ed25519 = _crypto()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(
            f"trusted key {path}: cannot be read ({exc.strerror or exc}); check its permissions"
        ) from None
    text = data.decode("ascii", "replace").strip()
    try:
        key = (
            serialization.load_ssh_public_key(data)
            if text.startswith("ssh-ed25519")
            else serialization.load_pem_public_key(data)
        )
    except ValueError as exc:
        raise BundleError(f"trusted key {path}: not a PEM or OpenSSH public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise BundleError(f"trusted key {path}: not an Ed25519 public key")
    return [_public_raw(key)]


def trusted_keys(paths: Sequence[str | os.PathLike[str]] | None = None) -> dict[str, bytes]:
    """The trusted public keys by key id: ``paths`` (files or folders), else those OLVF_TRUSTED_KEYS names."""
    if paths is None:
        variable = os.environ.get(TRUST_VARIABLE, "")
        paths = [p for p in variable.split(os.pathsep) if p.strip()]
    keys: dict[str, bytes] = {}
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            try:
                files = sorted(p for p in path.iterdir() if p.suffix.lower() in _KEY_SUFFIXES and p.is_file())
            except OSError as exc:
                raise BundleError(
                    f"trusted keys folder {path}: cannot be read ({exc.strerror or exc}); check its permissions"
                ) from None
            if not files:
                raise BundleError(f"trusted keys folder {path} holds no .pem or .pub file")
        elif path.is_file():
            files = [path]
        else:
            raise BundleError(f"trusted key {path} does not exist (from {TRUST_VARIABLE} or --trusted-keys)")
        for file in files:
            for raw in _public_keys_in(file):
                keys[key_id(raw)] = raw
    return keys


# --- signing and verifying ---------------------------------------------------------------


def sign_manifest(raw: dict[str, Any], private_key: Any) -> dict[str, Any]:
    """``signature.json``'s content for a manifest (as its JSON object)."""
    base = {key: value for key, value in raw.items() if key != INTEGRITY_KEY}
    public = _public_raw(private_key.public_key())
    return {
        "schema": SCHEMA,
        "algorithm": "ed25519",
        "key_id": key_id(public),
        "public_key": base64.b64encode(public).decode("ascii"),
        "signature": base64.b64encode(private_key.sign(canonical_manifest(base))).decode("ascii"),
        "manifest": base,
    }


@dataclass(frozen=True)
class SignatureStatus:
    """What a bundle's signature says about it, for reports.

    ``status``: "unsigned", "verified" (the manifest is what was signed, plus
    any ``local_additions``) or "changed since signing" (``changes`` says
    what). ``trusted``: the signing key is among the trusted ones (None when
    none are configured).
    """

    status: str
    key_id: str | None = None
    trusted: bool | None = None
    local_additions: tuple[str, ...] = ()
    changes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "key_id": self.key_id,
            "trusted": self.trusted,
            "local_additions": list(self.local_additions),
            "changes": list(self.changes),
        }


def signature_line(status: SignatureStatus) -> str:
    """The signature state in one line, for an operator: what was checked and, where nothing required a
    signature, how to make olvf require one. No key set means any bundle olvf sealed runs."""
    unrequired = f"runs because no trusted keys are set; set {TRUST_VARIABLE} to refuse it"
    if status.status == "unsigned":
        return f"bundle unsigned: {unrequired}"
    key = f"key {status.key_id}" + ("" if status.trusted is None else " (trusted)" if status.trusted else "")
    if status.status == "changed since signing":
        return f"bundle CHANGED SINCE SIGNING by {key} ({', '.join(status.changes)}): {unrequired}"
    extra = f", local additions: {', '.join(status.local_additions)}" if status.local_additions else ""
    required = "" if status.trusted else f"; set {TRUST_VARIABLE} to require it"
    return f"bundle signature verified, {key}{extra}{required}"


def _differences(base: dict[str, Any], current: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(local additions, other changes) of ``current`` against the signed ``base``.

    Every file the signer listed keeps its hash, engines included; only a signed engine retired here (its
    entry and its file both gone) may be missing. A device may add engines, each with a file name of its own:
    an engine naming a signed file would let that file be swapped.
    """
    additions: list[str] = []
    changes: list[str] = []
    signed_engines = [e for e in base.get("engines") or [] if isinstance(e, dict)]
    engines_now = [e for e in current.get("engines") or [] if isinstance(e, dict)]
    signed_files = base.get("files") or {}
    new_engine_files: set[str] = set()
    for engine in engines_now:
        if engine in signed_engines:
            continue
        name, graph, source = engine.get("file"), engine.get("source_graph"), engine.get("source_sha256")
        if not isinstance(name, str) or name in signed_files:
            changes.append(f"engine {name} takes the name of a signed file")
        elif not graph or signed_files.get(graph) != source:
            changes.append(f"engine {name} was not built from a signed graph")
        else:
            new_engine_files.add(name)
            additions.append(f"engine {name} ({engine.get('gpu_name')}, built {engine.get('built')})")
    retired = {e.get("file") for e in signed_engines if e not in engines_now}
    for key in sorted(set(base) | set(current)):
        if key in LOCAL_KEYS:
            continue
        before, after = base.get(key), current.get(key)
        if key == "files":
            after = after or {}
            before = {k: v for k, v in (before or {}).items() if not (k in retired and k not in after)}
            after = {k: v for k, v in after.items() if k not in new_engine_files}
        elif key == "parity":
            before = {k: v for k, v in (before or {}).items() if not k.startswith(ENGINE_PARITY_PREFIX)}
            after = {k: v for k, v in (after or {}).items() if not k.startswith(ENGINE_PARITY_PREFIX)}
        if before != after:
            changes.append(key)
    return additions, changes


def verify_signature(folder: Path, raw: dict[str, Any], trusted: dict[str, bytes] | None = None) -> SignatureStatus:
    """Check ``folder``'s signature against its current manifest ``raw``; raises BundleError where it must.

    ``trusted``: the trusted keys (empty or None: no key required).
    """
    path = Path(folder) / SIGNATURE_NAME
    required = bool(trusted)
    if not path.is_file():
        if required:
            raise BundleError(
                f"bundle {folder} is not signed, and only bundles signed by a trusted key may run here "
                f"({TRUST_VARIABLE}); sign it with olvf-export --resign {folder} --sign KEY"
            )
        return SignatureStatus("unsigned")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        public = base64.b64decode(record["public_key"], validate=True)
        signature = base64.b64decode(record["signature"], validate=True)
        base = record["manifest"]
        if record.get("schema") != SCHEMA or record.get("algorithm") != "ed25519" or not isinstance(base, dict):
            raise ValueError("unknown schema or algorithm")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"bundle {folder}: {SIGNATURE_NAME} is malformed ({exc}); sign the bundle again") from None
    ed25519 = _crypto()
    from cryptography.exceptions import InvalidSignature

    identity = key_id(public)
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, canonical_manifest(base))
    except (InvalidSignature, ValueError):
        raise BundleError(
            f"bundle {folder}: its signature does not verify (the signed manifest or the signature was altered); "
            "do not use it, copy the bundle again from its source"
        ) from None
    is_trusted = None if not trusted else identity in trusted
    if required and not is_trusted:
        raise BundleError(
            f"bundle {folder} is signed by key {identity}, which is not among the trusted keys ({TRUST_VARIABLE})"
        )
    current = {key: value for key, value in raw.items() if key != INTEGRITY_KEY}
    additions, changes = _differences(base, current)
    if changes:
        if required:
            raise BundleError(
                f"bundle {folder}: the manifest changed since key {identity} signed it ({', '.join(changes)}); "
                f"have it checked and signed again: olvf-export --resign {folder} --sign KEY"
            )
        return SignatureStatus("changed since signing", identity, is_trusted, tuple(additions), tuple(changes))
    return SignatureStatus("verified", identity, is_trusted, tuple(additions))


def write_signature(folder: Path, private_key: Any) -> str:
    """Sign ``folder``'s manifest as it is now (its integrity checked first); returns the key id."""
    from olvf.atomic import write_text_atomic
    from olvf.runtime.bundle.manifest import MANIFEST_NAME, parse_manifest, read_manifest_bytes

    data = read_manifest_bytes(Path(folder))
    parse_manifest(data, str(Path(folder) / MANIFEST_NAME))  # only a manifest olvf wrote, unaltered, is signed
    record = sign_manifest(json.loads(data), private_key)
    write_text_atomic(Path(folder) / SIGNATURE_NAME, json_text.dumps(record, indent=2) + "\n", force=True)
    return str(record["key_id"])
