"""The dispatcher: sends what the outbox owes, for every channel alike.

Due rows are grouped by (job, destination); each group goes to its channel on a small thread
pool, so a slow destination never holds up another, and one group is never sent by two threads at
once. What the destination acknowledged is marked SENT row by row as it happens (a crash then
resends only the rest); the rows left get attempt + 1 and the next time from the purpose's
RetryPolicy, or become dead letters (FAILED). Each finished group is reported to `on_outcome`
(the pipeline settles the job, the triage side counts notifications).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ichnode.delivery.channel import Batch, Channel, Context
from ichnode.delivery.channels import CHANNELS
from ichnode.errors import DeliveryError
from ichnode.log import get_logger
from ichnode.retry import RetryPolicy
from ichnode.store.outbox import Delivery, Outbox, Purpose

log = get_logger("ichnode.delivery")
IDLE_WAKE_S = 30.0  # look again at least this often (a row queued by another process)


@dataclass(frozen=True)
class Outcome:
    """One group's delivery attempt: what went out, what did not and why."""
    job_id: int
    destination: str
    channel: str
    purpose: Purpose
    sent: tuple[Delivery, ...]
    failed: tuple[Delivery, ...]  # as they were before this attempt
    error: DeliveryError | None
    gave_up: bool  # some row became a dead letter


class Dispatcher:
    def __init__(self, outbox: Outbox, context: Context, policies: Mapping[Purpose, RetryPolicy], *,
                 on_outcome: Callable[[Outcome], None] = lambda outcome: None,
                 is_current: Callable[[int], bool] = lambda job_id: True,
                 channels: Mapping[str, Channel] = CHANNELS, workers: int = 4):
        """is_current(job_id): False once a job was superseded; its result rows are cancelled."""
        self.outbox, self.context, self.policies = outbox, context, policies
        self.on_outcome, self.is_current, self.channels = on_outcome, is_current, channels
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ichnode-send")
        self._busy: set[tuple[int, str, str]] = set()
        self._busy_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Dispatcher":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ichnode-dispatch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop taking due rows and wait for the groups in flight (each bounded by its timeout)."""
        self._stop.set()
        self.outbox.changed.set()
        if self._thread is not None:
            self._thread.join()
        self._pool.shutdown(wait=True)

    def run_due(self, now: float | None = None, job_id: int | None = None) -> int:
        """Deliver every due group (of one job, with job_id) in this thread: the cluster worker,
        tests. Returns how many groups were tried."""
        groups = self._due_groups(time.time() if now is None else now, job_id)
        for group in groups:
            self._deliver(group)
        return len(groups)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.outbox.changed.clear()
            try:
                for group in self._due_groups(time.time()):
                    key = _key(group[0])
                    with self._busy_lock:
                        if key in self._busy:
                            continue
                        self._busy.add(key)
                    self._pool.submit(self._deliver_then_free, key, group)
            except Exception:  # noqa: BLE001 - the dispatcher must keep running
                log.exception("dispatch_loop_error")
            due = self.outbox.next_due_at()
            wait = IDLE_WAKE_S if due is None else min(IDLE_WAKE_S, max(0.05, due - time.time()))
            self.outbox.changed.wait(wait)

    def _deliver_then_free(self, key: tuple[int, str, str], group: list[Delivery]) -> None:
        try:
            self._deliver(group)
        finally:
            with self._busy_lock:
                self._busy.discard(key)
            self.outbox.changed.set()  # rows of this group may have come due meanwhile

    def _due_groups(self, now: float, job_id: int | None = None) -> list[list[Delivery]]:
        groups: dict[tuple[int, str, str], list[Delivery]] = {}
        for row in self.outbox.due(now, job_id):
            groups.setdefault(_key(row), []).append(row)
        out = []
        for (job_id, _, _), rows in groups.items():
            if rows[0].purpose is Purpose.RESULT and not self.is_current(job_id):
                self.outbox.cancel(job_id)
                continue
            out.append(rows)
        return out

    def _deliver(self, rows: list[Delivery]) -> None:
        first = rows[0]
        acknowledged: dict[int, Delivery] = {}

        def sent(row: Delivery, ack_code: str | None = None, control_id: str | None = None) -> None:
            self.outbox.mark_sent(row.id, ack_code=ack_code, control_id=control_id)
            acknowledged[row.id] = row

        error = None
        try:
            self.channels[first.channel](Batch(first.job_id, first.destination, tuple(rows), sent),
                                         self.context)
        except DeliveryError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - a bug must not spin the dispatcher: back off, give up
            log.exception("delivery_crashed", job=first.job_id, channel=first.channel)
            error = DeliveryError(f"{type(exc).__name__}: {exc}")
        left = tuple(r for r in rows if r.id not in acknowledged)
        if left and error is None:
            error = DeliveryError(f"{first.channel}: returned without acknowledging {len(left)} row(s)")
        gave_up = False
        if left:  # one retry time for the group, so that it goes out together again
            attempts = max(row.attempts for row in left) + 1
            next_attempt = self.policies[first.purpose].next_attempt(attempts, time.time(), error.retry)
            gave_up = next_attempt is None
            self.outbox.mark_failed([row.id for row in left], attempts=attempts, error=str(error),
                                    next_attempt=next_attempt, ack_code=error.ack_code)
        if error is not None:
            log.warning("delivery_failed", job=first.job_id, destination=first.destination,
                        channel=first.channel, rows=len(left), gave_up=gave_up, error=str(error)[:200])
        outcome = Outcome(first.job_id, first.destination, first.channel, first.purpose,
                          tuple(acknowledged.values()), left, error, gave_up)
        try:
            self.on_outcome(outcome)
        except Exception:  # noqa: BLE001 - what is recorded stays recorded; the listener's bug is logged
            log.exception("delivery_outcome_failed", job=first.job_id)


def _key(row: Delivery) -> tuple[int, str, str]:
    """One group: a job's rows for one destination over one channel."""
    return row.job_id, row.channel, row.destination
