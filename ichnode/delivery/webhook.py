"""Channel "webhook": the job's notification as a JSON POST (ichnode.triage.notify)."""
from __future__ import annotations

from ichnode.delivery.channel import Batch, Context
from ichnode.errors import DeliveryError
from ichnode.triage.notify import post_webhook, webhook_body


def deliver(batch: Batch, context: Context) -> None:
    row = context.worklist_row(batch.job_id)
    if row is None:
        raise DeliveryError("worklist row is gone", retry=False)
    for n in batch.rows:
        status = post_webhook(context.config.notify.webhook_url, webhook_body(row),
                              context.config.notify.timeout_s)
        batch.sent(n, ack_code=f"HTTP {status}")
