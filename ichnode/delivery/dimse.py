"""Channel "dimse": result objects by C-STORE (ichnode.dicom.sender)."""
from __future__ import annotations

from pathlib import Path

from ichnode.delivery.channel import Batch, Context
from ichnode.dicom.sender import describe, send


def deliver(batch: Batch, context: Context) -> None:
    rows = {row.item: row for row in batch.rows}
    items = [describe(Path(row.payload)) for row in batch.rows]
    send(items, context.destination(batch.destination), calling_aet=context.config.node.ae_title,
         timeout_s=context.config.sender.timeout_s, on_sent=lambda uid: batch.sent(rows[uid]))
