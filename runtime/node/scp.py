"""The node's DICOM side: a C-STORE and C-ECHO SCP (pynetdicom) that answers success only for what is on disk.

- Associations are accepted only from the allowed calling AE titles (and
  hosts, where given); others are rejected with "calling AE title not
  recognised" before any data moves.
- Every storage SOP class is negotiated, so that a refusal can be a C-STORE
  status the sender logs and the node records: radiograph classes (CR, DX
  for presentation and for processing, Secondary Capture) are stored; any
  other class is refused with 0x0122 "SOP class not supported".
- An instance is answered 0x0000 only after :meth:`Spool.receive` has
  written, fsynced and renamed it into the spool; a full disk or an
  unwritable spool answers 0xA700 "out of resources" and leaves nothing
  behind; a data set whose header does not decode, every element but the
  pixel data (Rows as FD, a VR XX), answers 0xC210 "cannot understand" and
  nothing is stored: pydicom decodes lazily, so such a data set would
  otherwise pass here and fail later, in the worker.
- An instance already received for this bundle (a modality retrying after a
  lost association) is acknowledged again and not processed twice.

Only transfer syntaxes the reader decodes in this installation are
accepted, so a sender with a compressed image falls back to an uncompressed
one instead of handing over something that cannot be screened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydicom.uid import UID, AllTransferSyntaxes

from olvf.runtime.inputs.dicom_header import undecodable_element
from olvf.runtime.node.config import NodeConfig
from olvf.runtime.node.space import MIB, SpaceBudget
from olvf.runtime.node.spool import RESOURCE_ERRNOS, Spool, instance_key
from olvf.runtime.node.studylog import StudyLog

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
SOP_CLASS_NOT_SUPPORTED = 0x0122
CANNOT_UNDERSTAND = 0xC210

RADIOGRAPH_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}
UNCOMPRESSED = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian first: the syntax a sender most often proposes
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
)


def decodable_transfer_syntaxes() -> list[str]:
    """Uncompressed syntaxes and every compressed one whose decoder is installed here."""
    from pydicom.pixels import get_decoder

    found = list(UNCOMPRESSED)
    for uid in AllTransferSyntaxes:
        if uid in found or not UID(uid).is_compressed:
            continue
        try:
            if get_decoder(uid).is_available:
                found.append(str(uid))
        except NotImplementedError:
            continue
    return found


class Receiver:
    """The SCP's event handlers; ``on_stored`` is called after each new instance is durable."""

    def __init__(
        self,
        config: NodeConfig,
        spool: Spool,
        bundle_sha256: str,
        log: StudyLog,
        on_stored: Callable[[], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.config = config
        self.spool = spool
        self.space = SpaceBudget(spool, config.spool_limit_mb * MIB if config.spool_limit_mb else None)
        self.bundle_sha256 = bundle_sha256
        self.log = log
        self.on_stored = on_stored
        self.on_error = on_error
        self._guard = threading.Lock()
        self._busy: dict[str, threading.Lock] = {}  # one receive per key at a time; other keys go in parallel

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        from pynetdicom import evt

        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
        ]

    def on_requested(self, event: Any) -> None:
        """Reject an association from a calling AE title (or host) not on the allow-list."""
        requestor = event.assoc.requestor
        calling = str(requestor.primitive.calling_ae_title).strip()
        address = str(requestor.address)
        if not self.config.admits(calling, address):
            self.log.node(f"association from {calling}@{address} rejected: calling AE title not on the allow-list")
            # Rejected-permanent, by the service user, "calling AE title not recognised".
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)
            event.assoc.kill()  # as pynetdicom's own rejection does: waits until the reject has gone out

    def on_echo(self, event: Any) -> int:
        return SUCCESS

    def on_store(self, event: Any) -> int:
        received_ns = time.time_ns()  # the whole data set has arrived when pynetdicom calls this
        request = event.request
        sop_class = str(request.AffectedSOPClassUID)
        sop_instance = str(request.AffectedSOPInstanceUID)
        key = instance_key(sop_instance, self.bundle_sha256)
        calling = str(event.assoc.requestor.ae_title).strip()

        def refuse(status: int, answer: str, reason: str) -> int:
            self._record(
                key,
                state="refused",
                reason=reason,
                sop_class=_class_name(sop_class),
                sender=calling,
                received_at=received_ns / 1e9,
            )
            self.log.study(key, "refused", f"status 0x{status:04X} {answer}: {reason}")
            return status

        if sop_class not in RADIOGRAPH_CLASSES:
            reason = f"{_class_name(sop_class)} is not a radiograph storage class (accepted: CR, DX, Secondary Capture)"
            return refuse(SOP_CLASS_NOT_SUPPORTED, "SOP class not supported", reason)
        problem = _undecodable(event)
        if problem is not None:
            return refuse(CANNOT_UNDERSTAND, "cannot understand", problem)
        with self._key_lock(key):
            held = self.spool.holds(key)
            if held is not None:
                self.log.study(key, "duplicate", f"received again from {calling}; already {held}, not processed twice")
                return SUCCESS
            data = event.encoded_dataset(include_meta=True)
            rows, columns = _dimensions(event.dataset)
            with self.space.admit(key, len(data), rows, columns) as full:
                if full is not None:  # the sender asks again later; the results of those waiting keep their room
                    self.on_error(f"receiving: {full}; answered out of resources (0xA700)")
                    return refuse(OUT_OF_RESOURCES, "out of resources", full)
                try:
                    self.spool.receive(key, data, received_ns)
                except OSError as exc:
                    if exc.errno not in RESOURCE_ERRNOS:
                        raise
                    what = f"spool cannot store ({exc.strerror or exc})"
                    self.on_error(f"receiving: {what}; answered out of resources (0xA700)")
                    self.log.study(key, "refused", f"status 0xA700 out of resources: {what}", level=logging.ERROR)
                    return OUT_OF_RESOURCES
        self.log.study(key, "received", f"{_class_name(sop_class)} from {calling}")
        self.on_stored()
        return SUCCESS

    @contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._busy.setdefault(key, threading.Lock())
        with lock:
            yield
        with self._guard:
            if not lock.locked():
                self._busy.pop(key, None)

    def _record(self, key: str, **fields: Any) -> None:
        try:
            self.spool.record(key, **fields)
        except OSError as exc:  # a full disk must not turn a refusal into an exception status
            self.on_error(f"ledger: cannot record a refusal ({exc.strerror or exc})")


def _undecodable(event: Any) -> str | None:
    """Why the data set of a C-STORE cannot be screened, decoded to its last header element; None when it can.

    pydicom's warnings, which quote values, are silenced process-wide by the
    node (a per-call catch_warnings is not thread-safe).
    """
    try:
        problem = undecodable_element(event.dataset)
    except Exception as exc:  # pydicom raises many types for a garbled stream; none may be answered success
        return f"the data set cannot be decoded ({type(exc).__name__})"
    return None if problem is None else f"the header does not decode at {problem}"


def _dimensions(dataset: Any) -> tuple[int, int]:
    """Rows and Columns of a data set that decoded (see ``_undecodable``); 0 where absent (the reader refuses it)."""
    return int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)


def _class_name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else f"SOP class {uid}"


def build_ae(config: NodeConfig) -> Any:
    """A pynetdicom AE that accepts Verification and every storage class in the syntaxes decodable here."""
    from pynetdicom import AE, AllStoragePresentationContexts
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import

    ae = AE(ae_title=config.ae_title)
    syntaxes = decodable_transfer_syntaxes()
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            ae.add_supported_context(context.abstract_syntax, syntaxes)
    ae.add_supported_context(Verification)
    ae.require_called_aet = True
    ae.maximum_associations = 16
    ae.network_timeout = 60
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    return ae
