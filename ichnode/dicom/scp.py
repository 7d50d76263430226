"""The node's Application Entity: C-ECHO and C-STORE of CT images.

The C-STORE handler only checks, writes the received bytes atomically, records them and returns a
named status. It never decodes pixels, runs models or opens connections.
"""
from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field
from typing import Callable

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    EnhancedCTImageStorage,
    Verification,
)

from ichnode.audit import Audit
from ichnode.config import Config
from ichnode.dicom.access import AddressFilter, NodeServer, server_tls_context
from ichnode.dicom.filemeta import file_meta_bytes
from ichnode.dicom.intake import Refused, inspect_instance
from ichnode.dicom.status import StoreStatus
from ichnode.ids import digest
from ichnode.log import get_logger
from ichnode.store.disk import DiskGuard
from ichnode.store.jobs import JobStore, SeriesRow
from ichnode.store.spool import Spool

log = get_logger("ichnode.scp")

STORAGE_CLASSES = (CTImageStorage, EnhancedCTImageStorage)


@dataclass
class StoreHandler:
    """C-STORE: check (intake.py), watermark, write durably, record, then the success status.

    A re-sent instance with the same bytes (a sender that lost our acknowledgement, e.g. after a
    crash) is acknowledged again without touching the spool or the series. A re-sent SOP Instance
    UID with different bytes replaces the stored instance (the latest wins, as in a PACS), is
    logged as `instance_replaced` and reopens the series so the analysis sees the new content.
    """

    spool: Spool
    store: JobStore
    on_stored: Callable[[SeriesRow], None] = lambda series: None
    max_bytes: int = 1024 * 1024 * 1024
    disk_guard: DiskGuard | None = None
    audit: Audit = field(default_factory=Audit.disabled)
    _counts: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pressure: bool = field(default=False, repr=False)

    def __call__(self, event) -> int:
        calling = event.assoc.requestor.ae_title
        stream = event.encoded_dataset(include_meta=False)
        context = event.context
        verdict = inspect_instance(stream, context.transfer_syntax, context.abstract_syntax,
                                   self.max_bytes)
        if isinstance(verdict, Refused):
            return self._refuse(event, verdict.status, verdict.reason)
        refusal = self.disk_guard.refusal(len(stream)) if self.disk_guard is not None else None
        self._set_pressure(refusal)
        if refusal:
            return self._refuse(event, StoreStatus.OUT_OF_RESOURCES, refusal, verdict.sop_uid)
        # Encoded directly (filemeta.py): through pydicom it cost ~1 ms per instance.
        meta = file_meta_bytes(verdict.sop_class, verdict.sop_uid, str(context.transfer_syntax))
        chunks = [meta, stream]
        path = self.spool.path_for(verdict.study_uid, verdict.series_uid, verdict.sop_uid)
        try:
            with self.spool.lock_for(verdict.study_uid, verdict.series_uid):
                known = self.store.instance_path(verdict.sop_uid) == str(path)
                if known and self.spool.same_content(path, chunks):
                    self._count(event, "duplicates")
                    log.debug("duplicate_instance", sop=digest(verdict.sop_uid), calling_aet=calling)
                    return StoreStatus.SUCCESS
                size = self.spool.write(path, chunks)
                series = self.store.record_instance(
                    study_uid=verdict.study_uid, series_uid=verdict.series_uid,
                    sop_uid=verdict.sop_uid, path=str(path), size=size, calling_aet=calling,
                    modality=verdict.modality, description=verdict.description,
                    expected_count=verdict.expected_count)
        except OSError as exc:
            reason = "disk full" if exc.errno == errno.ENOSPC else f"write failed: {exc.strerror}"
            log.error("store_failed", reason=reason, sop=digest(verdict.sop_uid), calling_aet=calling)
            return self._refuse(event, StoreStatus.OUT_OF_RESOURCES, reason, verdict.sop_uid)
        if known:
            log.warning("instance_replaced", series=verdict.series_uid, sop=digest(verdict.sop_uid),
                        calling_aet=calling, reason="same SOP Instance UID, different content: "
                                                    "the latest is kept")
            self._count(event, "replaced")
        self._count(event, "stored")
        log.debug("stored", series=verdict.series_uid, sop=digest(verdict.sop_uid), size=size,
                  calling_aet=calling)
        self.on_stored(series)
        return StoreStatus.SUCCESS

    def _refuse(self, event, status: StoreStatus, reason: str, sop_uid: str | None = None) -> int:
        fields = {"status": f"0x{int(status):04X}", "reason": reason,
                  "calling_aet": event.assoc.requestor.ae_title,
                  "sop": digest(sop_uid) if sop_uid else None}
        log.warning("store_refused", **fields)
        self.audit.record("instance_refused", address=event.assoc.requestor.address, **fields)
        self._count(event, "refused")
        return status

    def _set_pressure(self, refusal: str | None) -> None:
        if bool(refusal) != self._pressure:
            self._pressure = bool(refusal)
            if refusal:
                log.error("disk_pressure", state="refusing instances", reason=refusal)
            else:
                log.info("disk_pressure", state="accepting instances again")
            self.audit.record("disk_pressure", refusing=bool(refusal), reason=refusal)

    def _count(self, event, what: str) -> None:
        with self._lock:
            counts = self._counts.setdefault(id(event.assoc), {})
            counts[what] = counts.get(what, 0) + 1

    def association_closed(self, event) -> None:
        """EVT_RELEASED / EVT_ABORTED: one audit record with what the association brought.
        EVT_CONN_CLOSE: the same, only if neither came (the connection just dropped)."""
        with self._lock:
            counts = self._counts.pop(id(event.assoc), None)
        if counts is None and event.event is evt.EVT_CONN_CLOSE:
            return
        self.audit.record("association_closed", kind=event.event.name,
                          calling_aet=event.assoc.requestor.ae_title,
                          address=event.assoc.requestor.address, **(counts or {}))


def build_ae(config: Config) -> AE:
    ae = AE(ae_title=config.node.ae_title)
    ae.maximum_associations = config.node.max_associations
    ae.maximum_pdu_size = config.node.max_pdu
    ae.network_timeout = config.node.network_timeout_s
    # A peer that connects and never sends an A-ASSOCIATE-RQ is dropped after this (ARTIM).
    ae.acse_timeout = min(ae.acse_timeout or 30.0, config.node.network_timeout_s)
    ae.require_calling_aet = list(config.node.allowed_calling_aets)
    ae.add_supported_context(Verification)
    for sop_class in STORAGE_CLASSES:
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    return ae


def _on_connection(event) -> None:
    log.info("association", kind=event.event.name, calling_aet=event.assoc.requestor.ae_title,
             address=event.assoc.requestor.address)


def start_scp(config: Config, handler: StoreHandler, port: int | None = None):
    """Start the SCP in the background; returns the server (call .shutdown()).

    The server is access.NodeServer: the address allow-list and the TLS handshake (tls: config)
    happen per connection before any DICOM is read.
    """
    ae = build_ae(config)

    def on_association(event) -> None:
        _on_connection(event)
        handler.audit.record("association_" + event.event.name.split("_")[-1].lower(),
                             calling_aet=event.assoc.requestor.ae_title,
                             called_aet=event.assoc.acceptor.ae_title,
                             address=event.assoc.requestor.address, tls=tls is not None)

    handlers = [
        (evt.EVT_C_STORE, handler),
        (evt.EVT_C_ECHO, lambda event: 0x0000),
        (evt.EVT_ACCEPTED, on_association),
        (evt.EVT_REJECTED, on_association),
        (evt.EVT_RELEASED, handler.association_closed),
        (evt.EVT_ABORTED, handler.association_closed),
        (evt.EVT_CONN_CLOSE, handler.association_closed),
    ]
    bind_port = config.node.port if port is None else port
    tls = server_tls_context(config)
    server = ae.make_server((config.node.host, bind_port), ssl_context=tls, evt_handlers=handlers,
                            server_class=NodeServer)
    server.address_filter = AddressFilter(config.node.allowed_addresses)
    server.handshake_timeout_s = config.tls.handshake_timeout_s
    server.on_refused = lambda address, reason: handler.audit.record(
        "connection_refused", address=address, reason=reason)
    # As AE.start_server(block=False) does; the server removes itself from ae._servers on shutdown.
    ae._servers.append(server)
    threading.Thread(target=server.serve_forever, name="ichnode-scp", daemon=True).start()
    return server
