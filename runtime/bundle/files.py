"""Open a model bundle and prove that each file it uses is the one that was exported.

The manifest is read once; its own hash identifies the bundle in reports.
A listed file is checked against its sha256 when the runtime first uses it
(:meth:`Bundle.file`), not at every start for every file: a bundle carries
engines of other machines and FP16 graphs a CPU never loads, and hashing
hundreds of megabytes nobody reads slows every start. ``verify_all`` checks
everything, for ``olvf-export --verify`` and for copies of a bundle.

The manifest's own integrity record is checked when it is read
(:mod:`olvf.runtime.bundle.manifest`), and its signature, if any, when the bundle
is opened (:mod:`olvf.runtime.bundle.signing`; required when trusted keys are set).
A graph may name external-data files: each must be a file the manifest
lists, hash-checked like the graph, or the graph is refused before any
backend opens it (:mod:`olvf.runtime.bundle.external_data`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from olvf.digest import sha256_file
from olvf.errors import BundleError
from olvf.runtime.bundle.external_data import MalformedGraph, external_data_locations
from olvf.runtime.bundle.manifest import MANIFEST_NAME, Manifest, parse_manifest, read_manifest_bytes
from olvf.runtime.bundle.signing import SignatureStatus, trusted_keys, verify_signature

_CHUNK = 1 << 22


@dataclass(frozen=True)
class Bundle:
    """An opened bundle: its folder, its manifest and the manifest's own hash.

    ``verify``: check each listed file's sha256 before its first use.
    ``signature``: what the bundle's signature says (unsigned, verified, changed since signing).
    """

    path: Path
    manifest: Manifest
    manifest_sha256: str
    verify: bool = True
    signature: SignatureStatus = SignatureStatus("unsigned")
    _checked: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def file(self, name: str) -> Path:
        """The path of a listed file, checked against the manifest's sha256 on first use.

        A graph's external-data files must be listed files too, and are checked with it.
        """
        member = self.path / name
        if name in self._checked:
            return member
        if not self.verify:
            self._check_external_data(name, member)
            self._checked.add(name)
            return member
        expected = self.manifest.files.get(name)
        if expected is None:
            raise BundleError(f"bundle {self.path}: {name} is not listed in {MANIFEST_NAME}; re-export the bundle")
        if not member.is_file():
            raise BundleError(f"bundle {self.path}: {name} is missing; copy the whole bundle folder or re-export it")
        try:
            actual = sha256_file(member)
        except OSError as exc:
            raise BundleError(f"bundle {self.path}: cannot read {name} ({exc.strerror or exc})") from None
        if actual != expected:
            raise BundleError(
                f"bundle {self.path}: {name} does not match the sha256 in {MANIFEST_NAME} "
                "(changed or corrupted since export); copy it again or re-export the bundle"
            )
        self._check_external_data(name, member)
        self._checked.add(name)
        return member

    def _check_external_data(self, name: str, member: Path) -> None:
        if not name.endswith(".onnx") or not member.is_file():
            return
        try:
            locations = external_data_locations(member)
        except (MalformedGraph, OSError) as exc:
            raise BundleError(
                f"bundle {self.path}: {name} is not a readable ONNX graph ({exc}); re-export it"
            ) from None
        for location in locations:
            inside = os.path.normpath(os.path.join(os.path.dirname(name), location)).replace(os.sep, "/")
            if location not in self.manifest.files and inside not in self.manifest.files:
                raise BundleError(
                    f"bundle {self.path}: {name} reads external data from {location!r}, which is not a file of the "
                    f"bundle's {MANIFEST_NAME}; a graph may only use data the manifest lists and hashes, re-export it"
                )
            self.file(location if location in self.manifest.files else inside)

    def verify_all(self) -> None:
        """Check every listed file now."""
        for name in self.manifest.files:
            self.file(name)


def open_bundle(
    bundle_dir: str | Path, *, verify: bool = True, trusted: Sequence[str | os.PathLike[str]] | None = None
) -> Bundle:
    """Read ``manifest.json`` once; listed files are checked when used (see :class:`Bundle`).

    ``trusted``: public keys (files or folders) of which one must have signed the bundle; None: those
    named by OLVF_TRUSTED_KEYS, if any. ``verify=False`` (olvf's own changes to a bundle) skips the
    file hashes and the signature.
    """
    path = Path(bundle_dir)
    if not path.exists():
        raise BundleError(
            f"bundle folder {path} does not exist; create it with olvf-export --out {path} "
            f"(or olvf-export --demo --out {path} for the demo)"
        )
    if not path.is_dir():
        raise BundleError(f"{path} is a file, not a bundle folder; pass the folder that holds {MANIFEST_NAME}")
    data = read_manifest_bytes(path)
    manifest = parse_manifest(data, str(path / MANIFEST_NAME))
    signature = SignatureStatus("unsigned")
    if verify:
        signature = verify_signature(path, json.loads(data), trusted_keys(trusted))
    return Bundle(
        path=path,
        manifest=manifest,
        manifest_sha256=hashlib.sha256(data).hexdigest(),
        verify=verify,
        signature=signature,
    )
