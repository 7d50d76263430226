"""The registration table: outbox channel name -> the module that carries its rows.

A new destination kind is one module with a `deliver(batch, context)` (channel.Channel) and one
line here, plus the record of its settings in ichnode.config (DESTINATION_KINDS), which the
configuration file's `destinations[].kind` names. Notifications use the "mllp" and "webhook"
channels (triage.service.notification_channels)."""
from __future__ import annotations

from ichnode.delivery import dimse, mllp, stow, webhook
from ichnode.delivery.channel import Channel

CHANNELS: dict[str, Channel] = {
    "dimse": dimse.deliver,
    "stow": stow.deliver,
    "mllp": mllp.deliver,
    "webhook": webhook.deliver,
}
