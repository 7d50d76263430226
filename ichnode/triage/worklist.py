"""The worklist store: one row per analysed job.

Its own table in the job store's SQLite file; job states (to hide superseded jobs) come through
the job store's API. The notifications about a row are outbox rows (ichnode.store.outbox).
Rows hold patient name, ID and accession number because the authenticated worklist pages show them;
nothing here logs a row.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from ichnode.store.db import open_shared
from ichnode.store.jobs import JobState, JobStore

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
"""
_JSON = ("flags", "volumes", "probabilities", "models", "key_images")
COLUMNS = (
    "series_key", "study_uid", "series_uid", "priority", "priority_rank", "reason", "flags",
    "volumes", "probabilities", "total_ml", "abc2_ml", "abc2_ratio", "lesion_count", "iph_location",
    "models", "thumbnail", "key_images", "patient_name", "patient_id", "accession",
    "study_description", "series_description", "study_date", "study_time", "modality",
    "scanner_model", "slices", "arrived", "analysed",
)


# The latest analysed job of each series (superseded ones are left out by job state, after).
_LATEST = """
SELECT w.* FROM worklist w
WHERE w.job_id = (SELECT MAX(w2.job_id) FROM worklist w2 WHERE w2.series_key = w.series_key)
"""


class WorklistStore:
    def __init__(self, target: Path | str, jobs: JobStore):
        """target: a SQLite file, or a postgresql:// URL (cluster mode)."""
        self._db, self._lock = open_shared(target, _SCHEMA, owner="worklist")
        self.jobs = jobs

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
            row = self._db.execute("SELECT * FROM worklist WHERE job_id=?", (job_id,)).fetchone()
        return self._with_states([row])[0] if row else None

    def _with_states(self, rows: list[sqlite3.Row]) -> list[dict]:
        states = self.jobs.states(r["job_id"] for r in rows)
        out = [_row(r) for r in rows]
        for row in out:
            state = states.get(row["job_id"])
            row["job_state"] = state.value if state else None
        return out

    def items(self, include_dismissed: bool = False, closed_days: float | None = None,
              now: float | None = None) -> list[dict]:
        """Current rows, by priority then arrival (oldest first: waiting longest). With closed_days,
        rows acknowledged or dismissed that arrived longer ago are left out; an open row is shown
        however old it is (a flag nobody has seen must not scroll away)."""
        query, args = _LATEST + ("" if include_dismissed else " AND w.dismissed_at IS NULL"), []
        if closed_days is not None:
            query += (" AND ((w.acknowledged_at IS NULL AND w.dismissed_at IS NULL)"
                      " OR w.arrived >= ?)")
            args.append((time.time() if now is None else now) - closed_days * 86400)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY w.priority_rank, w.arrived, w.job_id",
                                    args).fetchall()
        return [r for r in self._with_states(rows) if r["job_state"] != JobState.SUPERSEDED.value]

    def by_job(self) -> dict[int, dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, priority, acknowledged_by, acknowledged_at, dismissed_by, dismissed_at"
                " FROM worklist").fetchall()
        return {r["job_id"]: dict(r) for r in rows}

    def version(self) -> str:
        """Changes whenever a row is added or changed, or a job is superseded (which hides its
        row); the pages poll it, so it reads two counts, not every row."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*), MAX(updated) FROM worklist").fetchone()
        return f"{row[0]}-{self.jobs.count(JobState.SUPERSEDED)}-{row[1] or 0:.6f}"

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


def _row(row: sqlite3.Row) -> dict:
    data = dict(row)
    for key in _JSON:
        data[key] = json.loads(data[key]) if data.get(key) is not None else None
    data["results_delivered"] = bool(data["results_delivered"])
    return data


def triage_columns(jobs: JobStore, target: Path | str) -> dict[int, dict]:
    """job id -> {"priority", "acknowledged"} for `ichnode status` (no patient data)."""
    store = WorklistStore(target, jobs)
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
