"""Channel "mllp": the job's notification as HL7 v2.5.1 ORU^R01 over MLLP (ichnode.triage.notify)."""
from __future__ import annotations

from ichnode.delivery.channel import Batch, Context
from ichnode.errors import DeliveryError
from ichnode.triage.notify import build_oru, send_mllp


def deliver(batch: Batch, context: Context) -> None:
    mllp, timeout_s = context.config.notify.mllp, context.config.notify.timeout_s
    row = context.worklist_row(batch.job_id)
    if row is None:
        raise DeliveryError("worklist row is gone", retry=False)
    for n in batch.rows:
        control_id = f"ICH{batch.job_id}-{n.id}-{n.attempts + 1}"
        ack = send_mllp(build_oru(row, mllp, control_id), mllp.host, mllp.port, timeout_s, tls=mllp.tls)
        batch.sent(n, ack_code=ack, control_id=control_id)
