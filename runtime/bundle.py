"""Open a model bundle and prove its files are the ones that were exported."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from olvf.errors import BundleError
from olvf.runtime.manifest import MANIFEST_NAME, Manifest, read_manifest

_CHUNK = 1 << 22


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder, its manifest and the manifest's own hash."""

    path: Path
    manifest: Manifest
    manifest_sha256: str

    def file(self, name: str) -> Path:
        return self.path / name


def open_bundle(bundle_dir: str | Path, *, verify: bool = True) -> Bundle:
    """Read ``manifest.json`` and check every listed file against its sha256."""
    path = Path(bundle_dir)
    if not path.exists():
        raise BundleError(
            f"bundle folder {path} does not exist; create it with olvf-export --out {path} "
            f"(or olvf-export --demo --out {path} for the demo)"
        )
    if not path.is_dir():
        raise BundleError(f"{path} is a file, not a bundle folder; pass the folder that holds {MANIFEST_NAME}")
    manifest = read_manifest(path)
    if verify:
        for name, expected in manifest.files.items():
            member = path / name
            if not member.is_file():
                raise BundleError(f"bundle {path}: {name} is missing; copy the whole bundle folder or re-export it")
            if sha256_file(member) != expected:
                raise BundleError(
                    f"bundle {path}: {name} does not match the sha256 in {MANIFEST_NAME} "
                    "(changed or corrupted since export); copy it again or re-export the bundle"
                )
    return Bundle(path=path, manifest=manifest, manifest_sha256=sha256_file(path / MANIFEST_NAME))
