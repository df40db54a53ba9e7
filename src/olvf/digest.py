"""The sha256 of a file, read in blocks: the one digest the bundle, the reports, the reader and the exporter share."""

from __future__ import annotations

import hashlib
import os

_BLOCK = 1 << 22


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file's bytes, read in 4 MiB blocks (a bundle's graphs are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()
