"""SQLite job store: instances, series and jobs. The only place where job state changes.

One connection shared by the node's threads behind a lock, in WAL mode. Job and send state commit
with synchronous=FULL (flushed before the node acts on them). Instance records commit without a
flush (synchronous=NORMAL): the durable proof that an instance arrived is its spool file, flushed
before the C-STORE success status; a record lost to a power cut is re-read from that file when the
node starts (`Node.start` -> `rerecord_spool`). A process crash loses nothing either way (WAL).
"""
from __future__ import annotations

import enum
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ichnode.errors import DuplicateInstance, IllegalTransition
from ichnode.store.db import open_shared


class JobState(str, enum.Enum):
    QUEUED = "queued"
    ANALYSING = "analysing"
    SENDING = "sending"
    RETRY_WAIT = "retry_wait"
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"


_ALLOWED = {
    JobState.QUEUED: {JobState.ANALYSING, JobState.SUPERSEDED},
    JobState.ANALYSING: {JobState.SENDING, JobState.FAILED, JobState.QUEUED, JobState.SUPERSEDED},
    JobState.SENDING: {JobState.DONE, JobState.RETRY_WAIT, JobState.FAILED, JobState.SUPERSEDED},
    JobState.RETRY_WAIT: {JobState.SENDING, JobState.FAILED, JobState.SUPERSEDED},
    JobState.DONE: {JobState.QUEUED},
    JobState.FAILED: {JobState.QUEUED},
    JobState.SUPERSEDED: set(),
}
UNFINISHED = (JobState.QUEUED, JobState.ANALYSING, JobState.SENDING, JobState.RETRY_WAIT)
# A job found ANALYSING at start-up took the node down (a crash, the OOM killer) this many times:
# it is parked as failed instead of taking the node down again at every start.
MAX_ANALYSIS_STARTS = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    key TEXT PRIMARY KEY, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL,
    modality TEXT, description TEXT, expected_count INTEGER,
    instance_count INTEGER NOT NULL DEFAULT 0, generation INTEGER NOT NULL DEFAULT 1,
    open INTEGER NOT NULL DEFAULT 1, first_received REAL NOT NULL, last_received REAL NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_key TEXT NOT NULL REFERENCES series(key),
    path TEXT NOT NULL, size INTEGER NOT NULL, calling_aet TEXT, received REAL NOT NULL);
CREATE INDEX IF NOT EXISTS instances_by_series ON instances(series_key);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, series_key TEXT NOT NULL REFERENCES series(key),
    generation INTEGER NOT NULL, state TEXT NOT NULL, outcome TEXT, reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL, error TEXT,
    results TEXT NOT NULL DEFAULT '[]', timings TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL, updated REAL NOT NULL, analysis_starts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state);
CREATE TABLE IF NOT EXISTS sent (
    job_id INTEGER NOT NULL, destination TEXT NOT NULL, sop_uid TEXT NOT NULL, sent REAL NOT NULL,
    PRIMARY KEY (job_id, destination, sop_uid));
CREATE TABLE IF NOT EXISTS purges (
    series_key TEXT NOT NULL, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, job_id INTEGER,
    files INTEGER NOT NULL, bytes INTEGER NOT NULL, purged REAL NOT NULL);
"""


def _add_analysis_starts(db: sqlite3.Connection) -> None:
    """1: jobs.analysis_starts (a job that took the node down twice is parked)."""
    if "analysis_starts" not in {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}:
        db.execute("ALTER TABLE jobs ADD COLUMN analysis_starts INTEGER NOT NULL DEFAULT 0")


# Changes to the tables above, in order (store/db.py): append, never edit or remove one.
MIGRATIONS = (_add_analysis_starts,)


def series_key(study_uid: str, series_uid: str) -> str:
    # The study is part of the key: a stray instance of another study never joins a volume,
    # even if a broken modality reused the series UID.
    return f"{study_uid}/{series_uid}"


@dataclass(frozen=True)
class SeriesRow:
    key: str
    study_uid: str
    series_uid: str
    modality: str | None
    description: str | None
    expected_count: int | None
    instance_count: int
    generation: int
    open: bool
    first_received: float
    last_received: float


@dataclass(frozen=True)
class JobRow:
    id: int
    series_key: str
    generation: int
    state: JobState
    outcome: str | None
    reason: str | None
    attempts: int
    next_attempt: float | None
    error: str | None
    results: list[str]
    timings: dict
    created: float
    updated: float
    analysis_starts: int = 0


class JobStore:
    SYNCHRONOUS = "FULL"  # job and send state; instance records commit with NORMAL (module doc)

    def __init__(self, path: Path):
        self._db, self._lock = open_shared(path, _SCHEMA, synchronous=self.SYNCHRONOUS,
                                           owner="jobs", migrations=MIGRATIONS)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, flush: bool = True):
        return _Transaction(self._db, self._lock, None if flush else "NORMAL", self.SYNCHRONOUS)

    # --- instances and series -------------------------------------------------------------
    def record_instance(
        self, *, study_uid: str, series_uid: str, sop_uid: str, path: str, size: int,
        calling_aet: str, modality: str | None, description: str | None,
        expected_count: int | None, now: float | None = None,
    ) -> SeriesRow:
        """Record a durable instance; a late instance reopens a completed series. A SOP Instance
        UID already recorded under another series raises DuplicateInstance (that series keeps it)."""
        now = time.time() if now is None else now
        key = series_key(study_uid, series_uid)
        with self._tx(flush=False) as db:  # the spool file is the durable record (module doc)
            held = db.execute("SELECT series_key FROM instances WHERE sop_uid=?", (sop_uid,)).fetchone()
            if held is not None and held["series_key"] != key:
                raise DuplicateInstance("SOP Instance UID already received in another series")
            row = db.execute("SELECT open FROM series WHERE key=?", (key,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO series (key, study_uid, series_uid, modality, description,"
                    " expected_count, first_received, last_received) VALUES (?,?,?,?,?,?,?,?)",
                    (key, study_uid, series_uid, modality, description, expected_count, now, now))
            elif not row["open"]:
                db.execute("UPDATE series SET open=1, generation=generation+1 WHERE key=?", (key,))
            db.execute(
                "INSERT OR REPLACE INTO instances (sop_uid, series_key, path, size, calling_aet,"
                " received) VALUES (?,?,?,?,?,?)", (sop_uid, key, path, size, calling_aet, now))
            count = db.execute(
                "SELECT COUNT(*) FROM instances WHERE series_key=?", (key,)).fetchone()[0]
            db.execute(
                "UPDATE series SET instance_count=?, last_received=?,"
                " expected_count=COALESCE(?, expected_count) WHERE key=?",
                (count, now, expected_count, key))
            return _series(db.execute("SELECT * FROM series WHERE key=?", (key,)).fetchone())

    def instance_path(self, sop_uid: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT path FROM instances WHERE sop_uid=?", (sop_uid,)).fetchone()
        return row["path"] if row else None

    def all_instance_paths(self) -> set[str]:
        with self._lock:
            return {r["path"] for r in self._db.execute("SELECT path FROM instances")}

    def instance_paths(self, key: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT path FROM instances WHERE series_key=? ORDER BY received", (key,)).fetchall()
        return [r["path"] for r in rows]

    def series(self, key: str) -> SeriesRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM series WHERE key=?", (key,)).fetchone()
        return _series(row) if row else None

    def all_series(self) -> list[SeriesRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM series ORDER BY first_received").fetchall()
        return [_series(r) for r in rows]

    def due_series(self, now: float, quiet_s: float, expected_default: int | None) -> list[SeriesRow]:
        """Open series that are complete: expected count reached, or quiet for quiet_s."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM series WHERE open=1").fetchall()
        due = []
        for row in map(_series, rows):
            expected = expected_default or row.expected_count
            if (expected and row.instance_count >= expected) or now - row.last_received >= quiet_s:
                due.append(row)
        return due

    def close_series(self, key: str, now: float | None = None) -> int:
        """Mark a series complete and queue a job for it; earlier unfinished jobs are superseded."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute("SELECT generation FROM series WHERE key=?", (key,)).fetchone()
            placeholders = ",".join("?" * len(UNFINISHED))
            db.execute(
                f"UPDATE jobs SET state=?, updated=? WHERE series_key=? AND state IN ({placeholders})",
                (JobState.SUPERSEDED.value, now, key, *[s.value for s in UNFINISHED]))
            db.execute("UPDATE series SET open=0 WHERE key=?", (key,))
            cur = db.execute(
                "INSERT INTO jobs (series_key, generation, state, created, updated) VALUES (?,?,?,?,?)",
                (key, row["generation"], JobState.QUEUED.value, now, now))
            return cur.lastrowid

    # --- jobs -----------------------------------------------------------------------------
    def job(self, job_id: int) -> JobRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def jobs(self, states: tuple[JobState, ...] | None = None) -> list[JobRow]:
        query, args = "SELECT * FROM jobs", ()
        if states:
            query += f" WHERE state IN ({','.join('?' * len(states))})"
            args = tuple(s.value for s in states)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [_job(r) for r in rows]

    def due_retries(self, now: float) -> list[JobRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state=? AND next_attempt<=? ORDER BY id",
                (JobState.RETRY_WAIT.value, now)).fetchall()
        return [_job(r) for r in rows]

    def transition(self, job_id: int, new: JobState, **fields) -> JobRow:
        """Change a job's state (and other columns); illegal transitions raise IllegalTransition."""
        allowed_fields = {"outcome", "reason", "attempts", "next_attempt", "error", "results", "timings"}
        if set(fields) - allowed_fields:
            raise ValueError(f"unknown job fields {sorted(set(fields) - allowed_fields)}")
        for name in ("results", "timings"):
            if name in fields:
                fields[name] = json.dumps(fields[name])
        with self._tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise IllegalTransition(f"job {job_id} does not exist")
            old = JobState(row["state"])
            if new not in _ALLOWED[old]:
                raise IllegalTransition(f"job {job_id}: {old.value} -> {new.value} is not allowed")
            sets = "".join(f", {k}=?" for k in fields)
            if new is JobState.ANALYSING:
                sets += ", analysis_starts=analysis_starts+1"
            db.execute(f"UPDATE jobs SET state=?, updated=?{sets} WHERE id=?",
                       (new.value, time.time(), *fields.values(), job_id))
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def recover(self) -> list[int]:
        """After a crash: analysis restarts (unless it took the node down MAX_ANALYSIS_STARTS
        times: then the job is parked as failed), sending resumes. Returns the ids to pick up."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET state=?, updated=?, error=? WHERE state=? AND analysis_starts>=?",
                       (JobState.FAILED.value, time.time(),
                        f"the analysis stopped the node {MAX_ANALYSIS_STARTS} times (crash or out "
                        "of memory): parked; `ichnode rerun` tries again",
                        JobState.ANALYSING.value, MAX_ANALYSIS_STARTS))
            db.execute("UPDATE jobs SET state=? WHERE state=?",
                       (JobState.QUEUED.value, JobState.ANALYSING.value))
            db.execute("UPDATE jobs SET state=?, next_attempt=? WHERE state=?",
                       (JobState.RETRY_WAIT.value, time.time(), JobState.SENDING.value))
            rows = db.execute("SELECT id FROM jobs WHERE state=?", (JobState.QUEUED.value,)).fetchall()
        return [r["id"] for r in rows]

    # --- per-destination send state ---------------------------------------------------------
    def requeue(self, job_id: int) -> JobRow:
        """`ichnode rerun`: analyse and send again. A job that was delivered is sent again in full;
        a failed one only sends what its destinations did not acknowledge."""
        job = self.job(job_id)
        if job is None:
            raise IllegalTransition(f"job {job_id} does not exist")
        if job.state is JobState.DONE:
            with self._tx() as db:
                db.execute("DELETE FROM sent WHERE job_id=?", (job_id,))
        with self._tx() as db:
            db.execute("UPDATE jobs SET analysis_starts=0 WHERE id=?", (job_id,))
        return self.transition(job_id, JobState.QUEUED, attempts=0, error=None, next_attempt=None)

    def mark_sent(self, job_id: int, destination: str, sop_uid: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO sent VALUES (?,?,?,?)",
                       (job_id, destination, sop_uid, time.time()))

    def sent_uids(self, job_id: int, destination: str) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT sop_uid FROM sent WHERE job_id=? AND destination=?",
                                    (job_id, destination)).fetchall()
        return {r["sop_uid"] for r in rows}

    # --- retention ------------------------------------------------------------------------
    _PURGEABLE = (
        "SELECT s.key, j.id AS job_id FROM series s JOIN jobs j ON j.series_key = s.key"
        " WHERE s.open = 0 AND j.id = (SELECT MAX(id) FROM jobs WHERE series_key = s.key)"
        " AND j.state = ? AND j.updated < ?"
        " AND EXISTS (SELECT 1 FROM instances i WHERE i.series_key = s.key)")

    def purgeable_series(self, before: float) -> list[str]:
        """Keys of closed series whose latest job is DONE since before, with instances on record."""
        with self._lock:
            rows = self._db.execute(self._PURGEABLE, (JobState.DONE.value, before)).fetchall()
        return [r["key"] for r in rows]

    def purge_series(self, key: str, before: float, now: float | None = None) -> list[str] | None:
        """Forget a purgeable series' instances and record the purge; returns their paths for the
        caller to delete, or None when the series is no longer purgeable (a late instance came)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(self._PURGEABLE + " AND s.key = ?",
                             (JobState.DONE.value, before, key)).fetchone()
            if row is None:
                return None
            series = db.execute("SELECT study_uid, series_uid FROM series WHERE key=?", (key,)).fetchone()
            files = db.execute("SELECT path, size FROM instances WHERE series_key=?", (key,)).fetchall()
            db.execute("DELETE FROM instances WHERE series_key=?", (key,))
            db.execute("INSERT INTO purges VALUES (?,?,?,?,?,?,?)",
                       (key, series["study_uid"], series["series_uid"], row["job_id"], len(files),
                        sum(f["size"] for f in files), now))
        return [f["path"] for f in files]

    def purges(self, key: str | None = None) -> list[dict]:
        query, args = "SELECT * FROM purges", ()
        if key is not None:
            query, args = query + " WHERE series_key=?", (key,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY purged", args).fetchall()
        return [dict(r) for r in rows]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the lock, optionally at another synchronous level (the
    pragma cannot change inside a transaction, so it is set before and restored after)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock, level: str | None,
                 usual: str):
        self._db, self._lock, self._level, self._usual = db, lock, level, usual

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            if self._level:
                self._db.execute(f"PRAGMA synchronous={self._level}")
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._restore()
            raise
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._restore()

    def _restore(self) -> None:
        try:
            if self._level:
                self._db.execute(f"PRAGMA synchronous={self._usual}")
        finally:
            self._lock.release()


def _series(row: sqlite3.Row) -> SeriesRow:
    data = dict(row)
    data["open"] = bool(data["open"])
    return SeriesRow(**data)


def _job(row: sqlite3.Row) -> JobRow:
    data = dict(row)
    data["state"] = JobState(data["state"])
    data["results"] = json.loads(data["results"])
    data["timings"] = json.loads(data["timings"])
    return JobRow(**data)
