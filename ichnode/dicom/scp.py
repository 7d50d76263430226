"""The node's Application Entity: C-ECHO and C-STORE of CT images.

The C-STORE handler only checks, writes the received bytes atomically, records them and returns a
named status. It never decodes pixels, runs models or opens connections.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Callable

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    EnhancedCTImageStorage,
    Verification,
)

from ichnode.config import Config
from ichnode.dicom.status import StoreStatus
from ichnode.ids import digest
from ichnode.log import get_logger
from ichnode.store.jobs import JobStore, SeriesRow
from ichnode.store.spool import Spool

log = get_logger("ichnode.scp")

STORAGE_CLASSES = (CTImageStorage, EnhancedCTImageStorage)


@dataclass
class StoreHandler:
    spool: Spool
    store: JobStore
    on_stored: Callable[[SeriesRow], None] = lambda series: None

    def __call__(self, event) -> int:
        calling = event.assoc.requestor.ae_title
        try:
            ds = event.dataset
            sop_class = str(ds.SOPClassUID)
            ids = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        except Exception as exc:  # noqa: BLE001 - any decode error means we cannot understand it
            log.warning("store_rejected", reason="unreadable dataset or missing UIDs",
                        error=type(exc).__name__, calling_aet=calling)
            return StoreStatus.CANNOT_UNDERSTAND
        if sop_class != event.context.abstract_syntax or not all(ids):
            log.warning("store_rejected", reason="SOP class does not match context or empty UID",
                        sop_class=sop_class, calling_aet=calling)
            return StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
        study_uid, series_uid, sop_uid = ids
        path = self.spool.path_for(study_uid, series_uid, sop_uid)
        try:
            size = self.spool.write(path, [event.encoded_dataset()])
            series = self.store.record_instance(
                study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid, path=str(path),
                size=size, calling_aet=calling, modality=_text(ds, "Modality"),
                description=_text(ds, "SeriesDescription"),
                expected_count=_int(ds, "ImagesInAcquisition"))
        except OSError as exc:
            reason = "disk full" if exc.errno == errno.ENOSPC else exc.strerror
            log.error("store_failed", reason=reason, sop=digest(sop_uid), calling_aet=calling)
            return StoreStatus.OUT_OF_RESOURCES
        log.debug("stored", series=series_uid, sop=sop_uid, size=size, calling_aet=calling)
        self.on_stored(series)
        return StoreStatus.SUCCESS


def _text(ds, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value) if value not in (None, "") else None


def _int(ds, keyword: str) -> int | None:
    try:
        value = int(ds.get(keyword))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def build_ae(config: Config) -> AE:
    ae = AE(ae_title=config.node.ae_title)
    ae.maximum_associations = config.node.max_associations
    ae.maximum_pdu_size = config.node.max_pdu
    ae.network_timeout = config.node.network_timeout_s
    ae.require_calling_aet = list(config.node.allowed_calling_aets)
    ae.add_supported_context(Verification)
    for sop_class in STORAGE_CLASSES:
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    return ae


def _on_connection(event) -> None:
    log.info("association", kind=event.event.name, calling_aet=event.assoc.requestor.ae_title,
             address=event.assoc.requestor.address)


def start_scp(config: Config, handler: StoreHandler, port: int | None = None):
    """Start the SCP in the background; returns the pynetdicom server (call .shutdown())."""
    ae = build_ae(config)
    handlers = [
        (evt.EVT_C_STORE, handler),
        (evt.EVT_C_ECHO, lambda event: 0x0000),
        (evt.EVT_ACCEPTED, _on_connection),
        (evt.EVT_REJECTED, _on_connection),
    ]
    bind_port = config.node.port if port is None else port
    return ae.start_server((config.node.host, bind_port), block=False, evt_handlers=handlers)

