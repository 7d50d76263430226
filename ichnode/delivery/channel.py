"""What a channel is given: a batch of one job's rows for one destination, and the node's
configuration and worklist to build its message from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from ichnode.config import Config, Destination
from ichnode.store.outbox import Delivery


@dataclass(frozen=True)
class Batch:
    job_id: int
    destination: str
    rows: tuple[Delivery, ...]
    # sent(row, ack_code=None, control_id=None): the destination acknowledged this row.
    sent: Callable[..., None]


@dataclass(frozen=True)
class Context:
    config: Config
    worklist_row: Callable[[int], dict | None]  # a job's worklist row (notification content)

    def destination(self, name: str) -> Destination:
        return next(d for d in self.config.destinations if d.name == name)


class Channel(Protocol):
    def __call__(self, batch: Batch, context: Context) -> None:
        """Deliver the batch: batch.sent(row) for each acknowledged row; raise
        ichnode.errors.DeliveryError for what did not go through."""
