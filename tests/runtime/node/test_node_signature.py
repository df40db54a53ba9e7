"""olvf-serve says what the bundle's signature is, at start and in ``status``, and refuses a changed one when told to.

Issue #27 F9: a signed bundle changed after signing started without a word unless OLVF_TRUSTED_KEYS was set.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from node_peers import Serve
from peers import free_port

from olvf.runtime.bundle.signing import TRUST_VARIABLE, SignatureStatus, signature_line, write_signature
from olvf.runtime.bundle.updates import update_manifest


def _signed_then_changed(bundle: Path, folder: Path) -> tuple[Path, Path]:
    """A copy of ``bundle`` signed by a new key, then given another operating point; and the public key."""
    copy = Path(shutil.copytree(bundle, folder / "bundle"))
    key = Ed25519PrivateKey.generate()
    write_signature(copy, key)
    update_manifest(copy, lambda m: dataclasses.replace(m, operating_points={"fresh": 0.4}), "the operating point")
    public = folder / "hospital.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return copy, public


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (SignatureStatus("unsigned"), f"bundle unsigned: runs because no trusted keys are set; set {TRUST_VARIABLE}"),
        (SignatureStatus("verified", "ab12cd34", True), "bundle signature verified, key ab12cd34 (trusted)"),
        (
            SignatureStatus("verified", "ab12cd34", None, ("engine e.plan (H100, built 2026-12-01)",)),
            f"bundle signature verified, key ab12cd34, local additions: engine e.plan (H100, built 2026-12-01); "
            f"set {TRUST_VARIABLE} to require it",
        ),
        (
            SignatureStatus("changed since signing", "ab12cd34", None, (), ("operating_points",)),
            "bundle CHANGED SINCE SIGNING by key ab12cd34 (operating_points): runs because no trusted keys are set",
        ),
    ],
    ids=["unsigned", "trusted", "local-additions", "changed"],
)
def test_the_signature_line_says_what_was_checked_and_how_to_require_it(status, expected) -> None:
    assert signature_line(status).startswith(expected)


@pytest.mark.slow
def test_a_bundle_changed_since_signing_is_said_at_start_and_in_status_and_refused_with_trusted_keys(
    tmp_path: Path, cascade_bundle: Path, monkeypatch
) -> None:
    bundle, public = _signed_then_changed(cascade_bundle, tmp_path)
    monkeypatch.delenv(TRUST_VARIABLE, raising=False)
    node = Serve(tmp_path / "node", bundle, f"PACS@127.0.0.1:{free_port()}")
    node.start()
    try:
        (start_line,) = [line for line in node.log.splitlines() if "node: listening as" in line]
        assert "bundle CHANGED SINCE SIGNING by key" in start_line and "(operating_points)" in start_line
        assert f"set {TRUST_VARIABLE} to refuse it" in start_line
        state = node.status()["node"]["signature"]
        assert state["status"] == "changed since signing" and state["changes"] == ["operating_points"]
        shown = subprocess.run(
            [sys.executable, "-m", "olvf.runtime.node", "status", "--spool", str(node.spool)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "bundle CHANGED SINCE SIGNING" in shown
    finally:
        assert node.terminate() == 0

    # With the signer's key trusted, the same bundle does not start: one line, no traceback.
    refused = subprocess.run(
        [sys.executable, "-m", "olvf.runtime.node", *node.args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, TRUST_VARIABLE: str(public)},
    )
    assert refused.returncode != 0
    assert "changed since key" in refused.stderr and "--resign" in refused.stderr
    assert "Traceback" not in refused.stderr
