"""Channel "stow": result objects by DICOMweb STOW-RS (ichnode.dicom.stow)."""
from __future__ import annotations

from pathlib import Path

from ichnode.delivery.channel import Batch, Context
from ichnode.dicom.sender import describe
from ichnode.dicom.stow import send_stow


def deliver(batch: Batch, context: Context) -> None:
    rows = {row.item: row for row in batch.rows}
    items = [describe(Path(row.payload)) for row in batch.rows]
    send_stow(items, context.destination(batch.destination), timeout_s=context.config.sender.timeout_s,
              on_sent=lambda uid: batch.sent(rows[uid]))
