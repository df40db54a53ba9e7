"""DICOM UIDs for olvf's objects: UUID-derived (``2.25.<uuid as integer>``, PS3.5 B.2), deterministic.

A re-run on the same source image with the same bundle must produce the
same SOP Instance UIDs, so a PACS that receives it again files a replacement
of the object it already has instead of a second, different copy beside it.
The UUID is a name-based (SHA-1, RFC 9562 version 5) UUID of the source's SOP
Instance UID, the bundle's manifest sha256 and the object's role, in an olvf
namespace; other inputs or another bundle give other UIDs. Nothing about the
patient enters the name, and a UID reveals nothing of its inputs.
"""

from __future__ import annotations

import json
import uuid

# Fixed forever: changing it would change every UID olvf has written.
OLVF_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:olvf:dicom-results")

# Roles, one per UID olvf mints for a source image.
SC_SERIES = "secondary-capture/series"
SC_INSTANCE = "secondary-capture/instance"
SR_SERIES = "structured-report/series"
SR_INSTANCE = "structured-report/instance"


def uuid_uid(name: str) -> str:
    """``2.25.`` and the decimal of the version-5 UUID of ``name`` in olvf's namespace (at most 44 characters)."""
    return f"2.25.{uuid.uuid5(OLVF_NAMESPACE, name).int}"


def derived_uid(source_sop_instance_uid: str, bundle_sha256: str, role: str) -> str:
    """The UID of ``role`` for results of ``bundle_sha256`` on the image ``source_sop_instance_uid``."""
    # JSON keeps the parts apart: ("1.2", "3") and ("1.", "23") must not name the same thing.
    return uuid_uid(json.dumps(["olvf-result/1", str(source_sop_instance_uid), bundle_sha256, role]))


def vertebra_role(index: int, level: str) -> str:
    """Role of one vertebra's tracking UID: its position and level, so a re-run tracks the same body."""
    return f"structured-report/vertebra/{index}/{level}"


def bundle_uid(bundle_sha256: str, role: str) -> str:
    """A UID that depends on the bundle only, such as the device observer that made every report."""
    return uuid_uid(json.dumps(["olvf-bundle/1", bundle_sha256, role]))
