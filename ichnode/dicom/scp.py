"""The node's Application Entity: C-ECHO and C-STORE of CT images.

The C-STORE handler only checks, writes the received bytes atomically, records them and returns a
named status. It never decodes pixels, runs models or opens connections.
"""
from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field
from typing import Callable

from pynetdicom import ALL_TRANSFER_SYNTAXES, build_context
from pynetdicom.sop_class import (
    CTImageStorage,
    EnhancedCTImageStorage,
    Verification,
)

from ichnode.audit import Audit
from ichnode.config import Config
from ichnode.dicom import dimse
from ichnode.dicom.acceptor import Acceptor, AssociationSlots, Context, Session, Settings
from ichnode.dicom.access import AddressFilter, ConnectionLimits, NodeServer, server_tls_context
from ichnode.dicom.filemeta import file_meta_bytes
from ichnode.dicom.intake import MB, Refused, inspect_instance
from ichnode.dicom.status import StoreStatus
from ichnode.errors import DuplicateInstance
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
    crash, or a PACS that re-sends a whole series) is acknowledged again without touching the
    spool or the series: no new analysis, nothing sent twice. A re-sent SOP Instance UID with
    different bytes replaces the stored instance (the latest wins, as in a PACS), is logged as
    `instance_replaced` and reopens the series so the analysis sees the new content. A SOP
    Instance UID already held under another series is refused (0x0111): the series that has it
    keeps it, and nothing acknowledged is moved or orphaned.
    """

    spool: Spool
    store: JobStore
    on_stored: Callable[[SeriesRow], None] = lambda series: None
    max_bytes: int = 1024 * 1024 * 1024
    disk_guard: DiskGuard | None = None
    audit: Audit = field(default_factory=Audit.disabled)
    _pressure: bool = field(default=False, repr=False)

    def c_store(self, session: Session, context: Context, command: dimse.Command,
                fragments: list[memoryview] | None, size: int) -> tuple[int, str | None]:
        """The C-STORE: (status, error comment for the sender)."""
        if fragments is None:
            return self._refuse(session, StoreStatus.OUT_OF_RESOURCES,
                                f"dataset of {size / MB:.1f} MB exceeds node.max_instance_mb "
                                f"({self.max_bytes / MB:g} MB)")
        return self.store_dataset(session, b"".join(fragments), context.transfer_syntax,
                                  context.abstract_syntax)

    def store_dataset(self, session: Session, stream: bytes, transfer_syntax: str,
                      sop_class: str) -> tuple[int, str | None]:
        """One received dataset (without file meta), by C-STORE or STOW-RS: (status, reason)."""
        calling = session.calling_aet
        verdict = inspect_instance(stream, transfer_syntax, sop_class, self.max_bytes)
        if isinstance(verdict, Refused):
            return self._refuse(session, verdict.status, verdict.reason)
        # Encoded directly (filemeta.py): through pydicom it cost ~1 ms per instance.
        meta = file_meta_bytes(verdict.sop_class, verdict.sop_uid, transfer_syntax)
        chunks = [meta, stream]
        size = len(meta) + len(stream)
        refusal = (self.disk_guard.refusal(size, self.spool.held_for(size))
                   if self.disk_guard is not None else None)
        self._set_pressure(refusal)
        if refusal:
            return self._refuse(session, StoreStatus.OUT_OF_RESOURCES, refusal, verdict.sop_uid)
        path = self.spool.path_for(verdict.study_uid, verdict.series_uid, verdict.sop_uid)
        try:
            with self.spool.lock_for(verdict.study_uid, verdict.series_uid):
                known = self.store.instance_path(verdict.sop_uid) == str(path)
                if known and self.spool.same_content(path, chunks):
                    session.count("duplicates")
                    log.debug("duplicate_instance", sop=digest(verdict.sop_uid), calling_aet=calling)
                    return StoreStatus.SUCCESS, None
                size = self.spool.write(path, chunks)
                series = self._record(path, size, verdict, calling, known)
                if series is None:
                    return self._refuse(session, StoreStatus.DUPLICATE_SOP_INSTANCE,
                                        "SOP Instance UID already received in another series; "
                                        "that series keeps it", verdict.sop_uid)
        except OSError as exc:
            reason = "disk full" if exc.errno == errno.ENOSPC else f"write failed: {exc.strerror}"
            log.error("store_failed", reason=reason, sop=digest(verdict.sop_uid), calling_aet=calling)
            return self._refuse(session, StoreStatus.OUT_OF_RESOURCES, reason, verdict.sop_uid)
        if known:
            log.warning("instance_replaced", series=verdict.series_uid, sop=digest(verdict.sop_uid),
                        calling_aet=calling, reason="same SOP Instance UID, different content: "
                                                    "the latest is kept")
            session.count("replaced")
        session.count("stored")  # logged per association (association_closed): a line per
        # instance cost 0.1 ms of the C-STORE, even filtered out
        self.on_stored(series)
        return StoreStatus.SUCCESS, None

    def _record(self, path, size: int, verdict, calling: str, known: bool) -> SeriesRow | None:
        """Record a written instance; None (and the file removed) when another series holds the
        same SOP Instance UID."""
        try:
            return self.store.record_instance(
                study_uid=verdict.study_uid, series_uid=verdict.series_uid,
                sop_uid=verdict.sop_uid, path=str(path), size=size, calling_aet=calling,
                modality=verdict.modality, description=verdict.description,
                expected_count=verdict.expected_count)
        except DuplicateInstance:
            if not known:
                path.unlink(missing_ok=True)
            return None

    def _refuse(self, session: Session, status: StoreStatus, reason: str,
                sop_uid: str | None = None) -> tuple[int, str]:
        fields = {"status": f"0x{int(status):04X}", "reason": reason,
                  "calling_aet": session.calling_aet,
                  "sop": digest(sop_uid) if sop_uid else None}
        log.warning("store_refused", **fields)
        self.audit.record("instance_refused", address=session.address, **fields)
        session.count("refused")
        return status, reason

    def _set_pressure(self, refusal: str | None) -> None:
        if bool(refusal) != self._pressure:
            self._pressure = bool(refusal)
            if refusal:
                log.error("disk_pressure", state="refusing instances", reason=refusal)
            else:
                log.info("disk_pressure", state="accepting instances again")
            self.audit.record("disk_pressure", refusing=bool(refusal), reason=refusal)

    def association_event(self, kind: str, session: Session, **fields) -> None:
        """One audit record per association: accepted or rejected, then closed with its counts."""
        if kind == "closed":
            fields.update(session.counts)
        self.audit.record(f"association_{kind}", calling_aet=session.calling_aet,
                          called_aet=session.called_aet, address=session.address, tls=session.tls,
                          **fields)


def acceptor_settings(config: Config, max_bytes: int) -> Settings:
    node = config.node
    supported = [build_context(Verification)]
    supported += [build_context(sop_class, ALL_TRANSFER_SYNTAXES) for sop_class in STORAGE_CLASSES]
    return Settings(allowed_calling_aets=frozenset(node.allowed_calling_aets),
                    called_aet=node.ae_title if node.check_called_aet else None,
                    certificate_aets={c.common_name: frozenset(c.ae_titles)
                                      for c in config.tls.certificate_aets},
                    max_pdu=node.max_pdu, network_timeout_s=node.network_timeout_s,
                    # A peer that connects and never sends an A-ASSOCIATE-RQ is dropped after this.
                    acse_timeout_s=min(30.0, node.network_timeout_s),
                    max_association_s=node.max_association_s,
                    max_command_bytes=node.max_command_kb * 1024,
                    max_dataset_bytes=max_bytes, supported=tuple(supported))


def start_scp(config: Config, handler: StoreHandler, port: int | None = None) -> NodeServer:
    """Start the SCP in the background; returns the server (call .shutdown()).

    The server is access.NodeServer: the address allow-list and the TLS handshake (tls: config)
    happen per connection before any DICOM is read; acceptor.Acceptor serves the association.
    """
    settings = acceptor_settings(config, handler.max_bytes)
    slots = AssociationSlots(config.node.max_associations)

    def serve(sock, address: str, certificate_name: str | None) -> None:
        session = Session(address=address, tls=certificate_name is not None,
                          certificate_name=certificate_name)
        Acceptor(sock, session, settings, handler, slots).run()

    bind_port = config.node.port if port is None else port
    server = NodeServer((config.node.host, bind_port), serve, server_tls_context(config))
    server.address_filter = AddressFilter(config.node.allowed_addresses)
    server.limits = ConnectionLimits(config.node.max_connections,
                                     config.node.max_connections_per_address)
    server.handshake_timeout_s = config.tls.handshake_timeout_s
    server.on_refused = lambda address, reason: handler.audit.record(
        "connection_refused", address=address, reason=reason)
    threading.Thread(target=server.serve_forever, name="ichnode-scp", daemon=True).start()
    return server
