"""The outbox: every outbound delivery is one row here, whatever carries it.

A row is one thing owed to one destination: a result object (SEG, SR, SC; `item` is its SOP
Instance UID, `payload` its file) for a PACS destination, or a notification (`item` NULL) for the
RIS (HL7) or a webhook. Rows move through one state enum, are retried by one policy
(`ichnode.retry.RetryPolicy`) and dead-lettered by one rule: FAILED once the channel refuses the
row for good or the attempts run out. `channel` names the transport module that carries the row
(`ichnode.delivery.channels.CHANNELS`); `destination` is its configured name.

A result row is unique per (job, destination, SOP Instance UID): queueing it again never sends
twice what a destination acknowledged, and a row of a superseded job is cancelled, not sent.
Tables in the job store's SQLite file; commits are flushed (FULL) because a row marked SENT is
the proof that nothing needs sending again after a crash.
"""
from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ichnode.store.db import Database, Transaction, open_shared


class DeliveryState(str, enum.Enum):
    PENDING = "pending"  # due at next_attempt
    SENT = "sent"  # acknowledged by the destination
    FAILED = "failed"  # dead letter: refused for good, or out of attempts
    CANCELLED = "cancelled"  # its job was superseded before it went out


class Purpose(str, enum.Enum):
    RESULT = "result"  # a DICOM object to a destination in `destinations:`
    NOTIFICATION = "notification"  # a message about a job to a channel in `notify:`


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, purpose TEXT NOT NULL,
    destination TEXT NOT NULL, channel TEXT NOT NULL, item TEXT, payload TEXT,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL,
    created REAL NOT NULL, arrived REAL, sent_at REAL, ack_code TEXT, control_id TEXT, error TEXT,
    UNIQUE (job_id, destination, item));
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_attempt);
CREATE INDEX IF NOT EXISTS outbox_by_job ON outbox(job_id);
"""


def _adopt_sent_and_notifications(db: Database) -> None:
    """1: the two delivery tables of 0.x (`sent`: acknowledged result objects; `notifications`)
    become outbox rows, then go. Result objects not yet acknowledged are queued again when the
    node starts (Node.start -> Pipeline.queue_unsent)."""
    tables = db.tables()
    if "sent" in tables:
        db.execute("INSERT OR IGNORE INTO outbox (job_id, purpose, destination, channel, item, state,"
                   " next_attempt, created, sent_at) SELECT job_id, 'result', destination, '', sop_uid,"
                   " 'sent', sent, sent, sent FROM sent")
        db.execute("DROP TABLE sent")
    if "notifications" in tables:
        db.execute("INSERT INTO outbox (job_id, purpose, destination, channel, state, attempts,"
                   " next_attempt, created, arrived, sent_at, ack_code, control_id, error)"
                   " SELECT job_id, 'notification', channel, channel, state, attempts, next_attempt,"
                   " created, sent_at - time_to_notification_s, sent_at, ack_code, control_id, error"
                   " FROM notifications ORDER BY id")
        db.execute("DROP TABLE notifications")


# Changes to the tables above, in order (store/db.py): append, never edit or remove one.
MIGRATIONS = (_adopt_sent_and_notifications,)


@dataclass(frozen=True)
class Delivery:
    id: int
    job_id: int
    purpose: Purpose
    destination: str
    channel: str
    item: str | None
    payload: str | None
    state: DeliveryState
    attempts: int
    next_attempt: float
    created: float
    arrived: float | None
    sent_at: float | None
    ack_code: str | None
    control_id: str | None
    error: str | None

    @property
    def time_to_delivery_s(self) -> float | None:
        """First image received -> acknowledged by the destination."""
        if self.sent_at is None or self.arrived is None:
            return None
        return self.sent_at - self.arrived


class Outbox:
    def __init__(self, target: Path | str):
        """target: a SQLite file, or a postgresql:// URL (cluster mode)."""
        self._db, self._lock = open_shared(target, _SCHEMA, synchronous="FULL", owner="outbox",
                                           migrations=MIGRATIONS)
        self.changed = threading.Event()  # set when a row becomes due now (the dispatcher waits on it)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def queue_results(self, job_id: int, destination: str, channel: str,
                      items: list[tuple[str, str]], arrived: float | None = None,
                      now: float | None = None) -> int:
        """Owe destination these (SOP Instance UID, file) pairs. A pair it acknowledged before stays
        sent; one that failed or was cancelled is owed again. Returns how many are pending."""
        now = time.time() if now is None else now
        with Transaction(self._db, self._lock) as db:
            db.executemany(
                "INSERT INTO outbox (job_id, purpose, destination, channel, item, payload, state,"
                " next_attempt, created, arrived) VALUES (?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (job_id, destination, item) DO UPDATE SET payload=excluded.payload,"
                " channel=excluded.channel, state=excluded.state, attempts=0,"
                " next_attempt=excluded.next_attempt, error=NULL WHERE outbox.state != 'sent'",
                [(job_id, Purpose.RESULT.value, destination, channel, uid, path,
                  DeliveryState.PENDING.value, now, now, arrived) for uid, path in items])
            pending = db.execute(
                "SELECT COUNT(*) FROM outbox WHERE job_id=? AND purpose=? AND destination=? AND state=?",
                (job_id, Purpose.RESULT.value, destination, DeliveryState.PENDING.value)).fetchone()[0]
        self.changed.set()
        return pending

    def queue_notification(self, job_id: int, channel: str, arrived: float | None,
                           now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._lock:
            row = self._db.execute(
                "INSERT INTO outbox (job_id, purpose, destination, channel, state, next_attempt,"
                " created, arrived) VALUES (?,?,?,?,?,?,?,?) RETURNING id",
                (job_id, Purpose.NOTIFICATION.value, channel, channel, DeliveryState.PENDING.value,
                 now, now, arrived)).fetchone()
        self.changed.set()
        return row[0]

    def forget_sent(self, job_id: int) -> None:
        """`ichnode rerun` of a delivered job: everything is owed again."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE job_id=? AND purpose=?",
                             (job_id, Purpose.RESULT.value))

    def cancel(self, job_id: int) -> int:
        """The job was superseded: what it still owes is not sent."""
        with self._lock:
            cur = self._db.execute("UPDATE outbox SET state=? WHERE job_id=? AND purpose=? AND state=?",
                                   (DeliveryState.CANCELLED.value, job_id, Purpose.RESULT.value,
                                    DeliveryState.PENDING.value))
        return cur.rowcount

    def due(self, now: float, job_id: int | None = None) -> list[Delivery]:
        """Pending rows whose time has come (of one job only, with job_id)."""
        where, args = "state=? AND next_attempt<=?", (DeliveryState.PENDING.value, now)
        if job_id is not None:
            where, args = where + " AND job_id=?", (*args, job_id)
        return self._select(where, args)

    def next_due_at(self, job_id: int | None = None) -> float | None:
        """When the next pending row (of one job, with job_id) comes due; None: nothing owed."""
        where, args = "state=?", (DeliveryState.PENDING.value,)
        if job_id is not None:
            where, args = where + " AND job_id=?", (*args, job_id)
        with self._lock:
            return self._db.execute(f"SELECT MIN(next_attempt) FROM outbox WHERE {where}", args).fetchone()[0]

    def mark_sent(self, delivery_id: int, *, ack_code: str | None = None,
                  control_id: str | None = None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("UPDATE outbox SET state=?, attempts=attempts+1, sent_at=?, ack_code=?,"
                             " control_id=?, error=NULL WHERE id=?",
                             (DeliveryState.SENT.value, now, ack_code, control_id, delivery_id))

    def mark_failed(self, delivery_ids: list[int], *, attempts: int, error: str,
                    next_attempt: float | None, ack_code: str | None = None) -> None:
        """These rows did not go through (one commit for a group): next_attempt None, dead
        letters (FAILED); else PENDING again at next_attempt."""
        state = DeliveryState.FAILED if next_attempt is None else DeliveryState.PENDING
        with self._lock:
            self._db.execute("UPDATE outbox SET state=?, attempts=?, next_attempt=COALESCE(?, next_attempt),"
                             f" error=?, ack_code=?, control_id=NULL WHERE id IN ({','.join('?' * len(delivery_ids))})",
                             (state.value, attempts, next_attempt, error[:500], ack_code, *delivery_ids))

    def deliveries(self, job_id: int | None = None, purpose: Purpose | None = None) -> list[Delivery]:
        where, args = ["1=1"], []
        if job_id is not None:
            where.append("job_id=?")
            args.append(job_id)
        if purpose is not None:
            where.append("purpose=?")
            args.append(purpose.value)
        return self._select(" AND ".join(where), tuple(args))

    def notifications(self, job_id: int | None = None) -> list[Delivery]:
        return self.deliveries(job_id, Purpose.NOTIFICATION)

    def sent_items(self, job_id: int, destination: str) -> set[str]:
        """SOP Instance UIDs of a job's result objects that destination acknowledged."""
        with self._lock:
            rows = self._db.execute("SELECT item FROM outbox WHERE job_id=? AND purpose=? AND destination=?"
                                    " AND state=?", (job_id, Purpose.RESULT.value, destination,
                                                     DeliveryState.SENT.value)).fetchall()
        return {r["item"] for r in rows}

    def states(self, job_id: int, purpose: Purpose) -> dict[DeliveryState, int]:
        """How many of a job's rows are in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS n FROM outbox WHERE job_id=? AND purpose=?"
                                    " GROUP BY state", (job_id, purpose.value)).fetchall()
        return {DeliveryState(r["state"]): r["n"] for r in rows}

    def pending(self, purpose: Purpose) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox WHERE state=? AND purpose=?",
                                    (DeliveryState.PENDING.value, purpose.value)).fetchone()[0]

    def _select(self, where: str, args: tuple) -> list[Delivery]:
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM outbox WHERE {where} ORDER BY id", args).fetchall()
        return [_delivery(r) for r in rows]


def _delivery(row) -> Delivery:
    data = dict(row)
    data["purpose"], data["state"] = Purpose(data["purpose"]), DeliveryState(data["state"])
    return Delivery(**data)
