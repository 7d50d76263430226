"""The worklist store: one row per analysed job, and the notifications sent about it.

Own tables in the job store's SQLite file (the worklist joins `jobs` to hide superseded jobs).
Rows hold patient name, ID and accession number because the authenticated worklist pages show them;
nothing here logs a row.
"""
from __future__ import annotations

import enum
import json
import sqlite3
import time
from pathlib import Path

from ichnode.store.db import open_shared
from ichnode.store.jobs import JobState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS worklist (
    job_id INTEGER PRIMARY KEY, series_key TEXT NOT NULL, study_uid TEXT, series_uid TEXT,
    priority TEXT NOT NULL, priority_rank INTEGER NOT NULL, reason TEXT,
    flags TEXT NOT NULL DEFAULT '[]', volumes TEXT NOT NULL DEFAULT '{}',
    probabilities TEXT NOT NULL DEFAULT '{}', total_ml REAL, abc2_ml REAL, abc2_ratio REAL,
    lesion_count INTEGER, iph_location TEXT, models TEXT NOT NULL DEFAULT '[]',
    thumbnail TEXT, key_images TEXT NOT NULL DEFAULT '[]',
    patient_name TEXT, patient_id TEXT, accession TEXT, study_description TEXT,
    series_description TEXT, study_date TEXT, study_time TEXT, modality TEXT, scanner_model TEXT,
    slices INTEGER, arrived REAL NOT NULL, analysed REAL NOT NULL, updated REAL NOT NULL,
    results_delivered INTEGER NOT NULL DEFAULT 0,
    acknowledged_by TEXT, acknowledged_at REAL, dismissed_by TEXT, dismissed_at REAL);
CREATE INDEX IF NOT EXISTS worklist_by_series ON worklist(series_key);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, channel TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL,
    created REAL NOT NULL, sent_at REAL, time_to_notification_s REAL, ack_code TEXT,
    control_id TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS notifications_by_state ON notifications(state, next_attempt);
"""
_JSON = ("flags", "volumes", "probabilities", "models", "key_images")
COLUMNS = (
    "series_key", "study_uid", "series_uid", "priority", "priority_rank", "reason", "flags",
    "volumes", "probabilities", "total_ml", "abc2_ml", "abc2_ratio", "lesion_count", "iph_location",
    "models", "thumbnail", "key_images", "patient_name", "patient_id", "accession",
    "study_description", "series_description", "study_date", "study_time", "modality",
    "scanner_model", "slices", "arrived", "analysed",
)


class NotificationState(str, enum.Enum):
    PENDING = "pending"  # due at next_attempt
    SENT = "sent"
    FAILED = "failed"  # final: refused, or out of attempts


# Latest job of each series, superseded jobs left out.
_CURRENT = f"""
SELECT w.*, j.state AS job_state FROM worklist w JOIN jobs j ON j.id = w.job_id
WHERE j.state != '{JobState.SUPERSEDED.value}'
  AND w.job_id = (SELECT MAX(w2.job_id) FROM worklist w2 WHERE w2.series_key = w.series_key)
"""


class WorklistStore:
    def __init__(self, path: Path):
        self._db, self._lock = open_shared(path, _SCHEMA, owner="worklist")

    def forget_patient(self, series_uid: str) -> int:
        """Retention reached this series: drop the patient's name and ID from its rows (the study
        was delivered long ago; the PACS holds the identity). Returns the rows changed."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE worklist SET patient_name=NULL, patient_id=NULL WHERE series_uid=?",
                (series_uid,))
        return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- worklist rows --------------------------------------------------------------------
    def upsert(self, job_id: int, now: float | None = None, **values) -> dict:
        """Insert or replace a job's row. Acknowledgement survives a re-analysis that keeps the
        priority; a changed priority asks for a new one."""
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown worklist columns {sorted(unknown)}")
        now = time.time() if now is None else now
        row = {k: (json.dumps(v) if k in _JSON else v) for k, v in values.items()}
        with self._lock:
            old = self._db.execute("SELECT priority FROM worklist WHERE job_id=?", (job_id,)).fetchone()
            if old is None:
                cols = ["job_id", *row, "updated"]
                self._db.execute(
                    f"INSERT INTO worklist ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    (job_id, *row.values(), now))
            else:
                sets = ", ".join(f"{k}=?" for k in row)
                reset = ""
                if values.get("priority", old["priority"]) != old["priority"]:
                    reset = ", acknowledged_by=NULL, acknowledged_at=NULL, dismissed_by=NULL, dismissed_at=NULL"
                self._db.execute(f"UPDATE worklist SET {sets}, updated=?{reset} WHERE job_id=?",
                                 (*row.values(), now, job_id))
        return self.get(job_id)

    def get(self, job_id: int) -> dict | None:
        with self._lock:
            row = self._db.execute(
                "SELECT w.*, j.state AS job_state FROM worklist w LEFT JOIN jobs j ON j.id = w.job_id"
                " WHERE w.job_id=?", (job_id,)).fetchone()
        return _row(row) if row else None

    def items(self, include_dismissed: bool = False, closed_days: float | None = None,
              now: float | None = None) -> list[dict]:
        """Current rows, by priority then arrival (oldest first: waiting longest). With closed_days,
        rows acknowledged or dismissed that arrived longer ago are left out; an open row is shown
        however old it is (a flag nobody has seen must not scroll away)."""
        query, args = _CURRENT + ("" if include_dismissed else " AND w.dismissed_at IS NULL"), []
        if closed_days is not None:
            query += (" AND ((w.acknowledged_at IS NULL AND w.dismissed_at IS NULL)"
                      " OR w.arrived >= ?)")
            args.append((time.time() if now is None else now) - closed_days * 86400)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY w.priority_rank, w.arrived, w.job_id",
                                    args).fetchall()
        return [_row(r) for r in rows]

    def by_job(self) -> dict[int, dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, priority, acknowledged_by, acknowledged_at, dismissed_by, dismissed_at"
                " FROM worklist").fetchall()
        return {r["job_id"]: dict(r) for r in rows}

    def version(self) -> str:
        """Changes whenever a row is added or changed (the pages poll it)."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*), MAX(updated) FROM worklist").fetchone()
            states = self._db.execute(
                "SELECT COUNT(*) FROM worklist w JOIN jobs j ON j.id = w.job_id"
                " WHERE j.state = ?", (JobState.SUPERSEDED.value,)).fetchone()
        return f"{row[0]}-{states[0]}-{row[1] or 0:.6f}"

    def mark(self, job_id: int, action: str, user: str, now: float | None = None) -> dict | None:
        """action "acknowledge" or "dismiss": who and when. None if there is no such row."""
        column = {"acknowledge": "acknowledged", "dismiss": "dismissed"}[action]
        now = time.time() if now is None else now
        with self._lock:
            cur = self._db.execute(
                f"UPDATE worklist SET {column}_by=?, {column}_at=?, updated=? WHERE job_id=?",
                (user, now, now, job_id))
        return self.get(job_id) if cur.rowcount else None

    def restore(self, job_id: int, now: float | None = None) -> dict | None:
        now = time.time() if now is None else now
        with self._lock:
            cur = self._db.execute(
                "UPDATE worklist SET dismissed_by=NULL, dismissed_at=NULL, updated=? WHERE job_id=?",
                (now, job_id))
        return self.get(job_id) if cur.rowcount else None

    def set_delivered(self, job_id: int, delivered: bool, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("UPDATE worklist SET results_delivered=?, updated=? WHERE job_id=?",
                             (int(delivered), now, job_id))

    # --- notifications ----------------------------------------------------------------------
    def add_notification(self, job_id: int, channel: str, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO notifications (job_id, channel, state, next_attempt, created)"
                " VALUES (?,?,?,?,?)", (job_id, channel, NotificationState.PENDING.value, now, now))
        return cur.lastrowid

    def due_notifications(self, now: float) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM notifications WHERE state=? AND next_attempt<=? ORDER BY id",
                (NotificationState.PENDING.value, now)).fetchall()
        return [dict(r) for r in rows]

    def next_notification_at(self) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt) FROM notifications WHERE state=?",
                (NotificationState.PENDING.value,)).fetchone()
        return row[0]

    def update_notification(self, notification_id: int, **fields) -> None:
        allowed = {"state", "attempts", "next_attempt", "sent_at", "time_to_notification_s",
                   "ack_code", "control_id", "error"}
        if set(fields) - allowed:
            raise ValueError(f"unknown notification fields {sorted(set(fields) - allowed)}")
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE notifications SET {sets} WHERE id=?",
                             (*fields.values(), notification_id))

    def notifications(self, job_id: int | None = None) -> list[dict]:
        query, args = "SELECT * FROM notifications", ()
        if job_id is not None:
            query, args = query + " WHERE job_id=?", (job_id,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [dict(r) for r in rows]

    def queue_depth(self, states: list[str]) -> dict[str, int]:
        """Jobs per unfinished state, and open series as "receiving" (read from the job store)."""
        counts = dict.fromkeys(states, 0)
        with self._lock:
            rows = self._db.execute(
                f"SELECT state, COUNT(*) FROM jobs WHERE state IN ({','.join('?' * len(states))})"
                " GROUP BY state", states).fetchall()
            counts["receiving"] = self._db.execute(
                "SELECT COUNT(*) FROM series WHERE open=1").fetchone()[0]
        counts.update({r[0]: r[1] for r in rows})
        return counts

    def pending_notifications(self) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT COUNT(*) FROM notifications WHERE state=?",
                (NotificationState.PENDING.value,)).fetchone()[0]


def _row(row: sqlite3.Row) -> dict:
    data = dict(row)
    for key in _JSON:
        data[key] = json.loads(data[key]) if data.get(key) is not None else None
    data["results_delivered"] = bool(data["results_delivered"])
    return data


def triage_columns(db_path: Path) -> dict[int, dict]:
    """job id -> {"priority", "acknowledged"} for `ichnode status` (no patient data)."""
    store = WorklistStore(db_path)
    try:
        rows = store.by_job()
    finally:
        store.close()
    out = {}
    for job_id, r in rows.items():
        ack = ""
        if r["acknowledged_at"] is not None:
            ack = f"{r['acknowledged_by']} {time.strftime('%H:%M', time.localtime(r['acknowledged_at']))}"
        if r["dismissed_at"] is not None:
            ack = (ack + "; " if ack else "") + f"dismissed by {r['dismissed_by']}"
        out[job_id] = {"priority": r["priority"], "acknowledged": ack}
    return out
