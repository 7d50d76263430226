"""C-STORE SCU: one association per job and destination, per-instance status; DICOM TLS when the
destination has a `tls` block (ichnode/tls_client.py).

What a destination already acknowledged (recorded by the caller through `on_sent`) is not sent again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pydicom
from pynetdicom import AE

from ichnode.config import Destination
from ichnode.errors import SendError
from ichnode.log import get_logger
from ichnode.tls_client import client_context, describe as describe_tls, server_name

log = get_logger("ichnode.sender")


@dataclass(frozen=True)
class Outgoing:
    path: Path
    sop_uid: str
    sop_class: str
    transfer_syntax: str


def describe(path: Path) -> Outgoing:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return Outgoing(Path(path), str(ds.SOPInstanceUID), str(ds.SOPClassUID),
                    str(ds.file_meta.TransferSyntaxUID))


def send(items: list[Outgoing], dest: Destination, *, calling_aet: str, timeout_s: float,
         on_sent: Callable[[str], None]) -> None:
    """Send items to dest; raise SendError naming what failed. on_sent(sop_uid) after each success."""
    if not items:
        return
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for sop_class, syntax in sorted({(i.sop_class, i.transfer_syntax) for i in items}):
        ae.add_requested_context(sop_class, syntax)
    tls_args, tls_failures = None, []
    if dest.tls is not None:
        try:
            context = client_context(dest.tls, tls_failures)
        except (OSError, ValueError) as exc:  # files changed since the configuration was loaded
            raise SendError(f"destination {dest.name}: TLS set-up failed: {exc}") from exc
        tls_args = (context, server_name(dest.tls, dest.host))
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
    if not assoc.is_established:
        where = f"destination {dest.name} ({dest.ae_title}@{dest.host}:{dest.port}" + \
                (" over TLS)" if tls_args else ")")
        if tls_failures:
            raise SendError(f"{where}: TLS connection failed: {describe_tls(tls_failures[-1])}")
        raise SendError(f"{where} rejected or did not answer the association" +
                        (" (also how a TLS peer answers when it refuses this node's client "
                         "certificate)" if tls_args else ""))
    failures = []
    try:
        for item in items:
            status = assoc.send_c_store(pydicom.dcmread(item.path))
            code = getattr(status, "Status", None)
            if code is not None and (code == 0x0000 or code & 0xF000 == 0xB000):
                on_sent(item.sop_uid)
            else:
                failures.append(f"{item.sop_uid}: status {'none' if code is None else hex(code)}")
                if not assoc.is_established:
                    break
    finally:
        if assoc.is_established:
            assoc.release()
    if failures:
        raise SendError(f"destination {dest.name}: {len(failures)} instance(s) not stored "
                        f"({failures[0]})")
    log.info("sent", destination=dest.name, count=len(items), tls=tls_args is not None)
