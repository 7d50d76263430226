"""The job store: instances, series and jobs. The only place where job state changes.

SQLite for the single node, PostgreSQL in cluster mode (store/db.py: the same SQL). Where two
processes may race (receivers completing one series, workers taking one job), a row lock
(`FOR UPDATE`) or a conditional update decides, so each thing happens once.

On SQLite: one connection shared by the node's threads behind a lock, in WAL mode. Job and send state commit
with synchronous=FULL (flushed before the node acts on them). Instance records commit without a
flush (synchronous=NORMAL): the durable proof that an instance arrived is its spool file, flushed
before the C-STORE success status; a record lost to a power cut is re-read from that file when the
node starts (`Node.start` -> `rerecord_spool`). A process crash loses nothing either way (WAL).
"""
from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ichnode.errors import DuplicateInstance, IllegalTransition
from ichnode.store.db import Database, Transaction, open_shared


class JobState(str, enum.Enum):
    QUEUED = "queued"
    ANALYSING = "analysing"
    SENDING = "sending"  # its result objects are owed in the outbox (ichnode.store.outbox)
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"


_ALLOWED = {
    JobState.QUEUED: {JobState.ANALYSING, JobState.SUPERSEDED},
    JobState.ANALYSING: {JobState.SENDING, JobState.FAILED, JobState.QUEUED, JobState.SUPERSEDED},
    JobState.SENDING: {JobState.DONE, JobState.FAILED, JobState.SUPERSEDED},
    JobState.DONE: {JobState.QUEUED},
    JobState.FAILED: {JobState.QUEUED},
    JobState.SUPERSEDED: set(),
}
UNFINISHED = (JobState.QUEUED, JobState.ANALYSING, JobState.SENDING)
# A job found ANALYSING at start-up took the node down (a crash, the OOM killer) this many times:
# it is parked as failed instead of taking the node down again at every start.
MAX_ANALYSIS_STARTS = 2
_CHUNK = 500  # job ids per `IN (...)` query
_PARKED = (f"the analysis stopped its analyser {MAX_ANALYSIS_STARTS} times (crash or out of memory): "
           "parked; `ichnode rerun` tries again")

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
    generation INTEGER NOT NULL, state TEXT NOT NULL, outcome TEXT, reason TEXT, error TEXT,
    results TEXT NOT NULL DEFAULT '[]', timings TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL, updated REAL NOT NULL, analysis_starts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state);
CREATE TABLE IF NOT EXISTS purges (
    series_key TEXT NOT NULL, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, job_id INTEGER,
    files INTEGER NOT NULL, bytes INTEGER NOT NULL, purged REAL NOT NULL);
"""


def _add_analysis_starts(db: Database) -> None:
    """1: jobs.analysis_starts (a job that took the node down twice is parked)."""
    if "analysis_starts" not in db.columns("jobs"):
        db.execute("ALTER TABLE jobs ADD COLUMN analysis_starts INTEGER NOT NULL DEFAULT 0")


def _retries_move_to_the_outbox(db: Database) -> None:
    """2: attempts and retry times belong to each outbox row (ichnode.store.outbox); a job that
    was waiting to retry is SENDING, and the outbox owes its objects."""
    db.execute("UPDATE jobs SET state='sending' WHERE state='retry_wait'")
    columns = db.columns("jobs")
    for column in ("attempts", "next_attempt"):
        if column in columns:
            db.execute(f"ALTER TABLE jobs DROP COLUMN {column}")


# Changes to the tables above, in order (store/db.py): append, never edit or remove one.
MIGRATIONS = (_add_analysis_starts, _retries_move_to_the_outbox)


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
    error: str | None
    results: list[str]
    timings: dict
    created: float
    updated: float
    analysis_starts: int = 0


class JobStore:
    SYNCHRONOUS = "FULL"  # job and send state; instance records commit with NORMAL (module doc)

    def __init__(self, target: Path | str):
        """target: a SQLite file, or a postgresql:// URL (cluster mode)."""
        self._db, self._lock = open_shared(target, _SCHEMA, synchronous=self.SYNCHRONOUS,
                                           owner="jobs", migrations=MIGRATIONS)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, flush: bool = True):
        return Transaction(self._db, self._lock, None if flush else "NORMAL", self.SYNCHRONOUS)

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
            created = db.execute(
                "INSERT INTO series (key, study_uid, series_uid, modality, description,"
                " expected_count, first_received, last_received) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT (key) DO NOTHING RETURNING key",
                (key, study_uid, series_uid, modality, description, expected_count, now, now)).fetchone()
            if created is None:  # lock the series: another receiver may be adding to it too
                row = db.execute("SELECT open FROM series WHERE key=? FOR UPDATE", (key,)).fetchone()
                if not row["open"]:
                    db.execute("UPDATE series SET open=1, generation=generation+1 WHERE key=?", (key,))
            db.execute(
                "INSERT INTO instances (sop_uid, series_key, path, size, calling_aet, received)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (sop_uid) DO UPDATE SET series_key=excluded.series_key,"
                " path=excluded.path, size=excluded.size, calling_aet=excluded.calling_aet,"
                " received=excluded.received", (sop_uid, key, path, size, calling_aet, now))
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

    def close_series(self, key: str, now: float | None = None) -> int | None:
        """Mark an open series complete and queue a job for it; earlier unfinished jobs are
        superseded. None when the series was not open (another receiver completed it first)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute("UPDATE series SET open=0 WHERE key=? AND open=1 RETURNING generation",
                             (key,)).fetchone()
            if row is None:
                return None
            placeholders = ",".join("?" * len(UNFINISHED))
            db.execute(
                f"UPDATE jobs SET state=?, updated=? WHERE series_key=? AND state IN ({placeholders})",
                (JobState.SUPERSEDED.value, now, key, *[s.value for s in UNFINISHED]))
            return db.execute(
                "INSERT INTO jobs (series_key, generation, state, created, updated) VALUES (?,?,?,?,?)"
                " RETURNING id", (key, row["generation"], JobState.QUEUED.value, now, now)).fetchone()[0]

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

    def states(self, job_ids) -> dict[int, JobState]:
        """The state of each of these jobs (those that exist). Asked in chunks: SQLite takes at
        most 32766 parameters in one statement, and the worklist grows by a row per study."""
        ids, states = list(job_ids), {}
        with self._lock:
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i:i + _CHUNK]
                rows = self._db.execute(f"SELECT id, state FROM jobs WHERE id IN ({','.join('?' * len(chunk))})",
                                        chunk).fetchall()
                states.update({r["id"]: JobState(r["state"]) for r in rows})
        return states

    def count(self, state: JobState) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state=?", (state.value,)).fetchone()[0]

    def queue_depth(self) -> dict[str, int]:
        """Jobs per unfinished state, and open series as "receiving"."""
        states = [s.value for s in UNFINISHED]
        counts = dict.fromkeys(states, 0)
        with self._lock:
            rows = self._db.execute(
                f"SELECT state, COUNT(*) FROM jobs WHERE state IN ({','.join('?' * len(states))})"
                " GROUP BY state", states).fetchall()
            counts["receiving"] = self._db.execute("SELECT COUNT(*) FROM series WHERE open=1").fetchone()[0]
        counts.update({r[0]: r[1] for r in rows})
        return counts

    def transition(self, job_id: int, new: JobState, **fields) -> JobRow:
        """Change a job's state (and other columns); illegal transitions raise IllegalTransition."""
        allowed_fields = {"outcome", "reason", "error", "results", "timings"}
        if set(fields) - allowed_fields:
            raise ValueError(f"unknown job fields {sorted(set(fields) - allowed_fields)}")
        for name in ("results", "timings"):
            if name in fields:
                fields[name] = json.dumps(fields[name])
        with self._tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE id=? FOR UPDATE", (job_id,)).fetchone()
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
        times: then the job is parked as failed); SENDING jobs stay so (the outbox resumes them).
        Returns the ids to analyse."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET state=?, updated=?, error=? WHERE state=? AND analysis_starts>=?",
                       (JobState.FAILED.value, time.time(), _PARKED, JobState.ANALYSING.value,
                        MAX_ANALYSIS_STARTS))
            db.execute("UPDATE jobs SET state=? WHERE state=?",
                       (JobState.QUEUED.value, JobState.ANALYSING.value))
            rows = db.execute("SELECT id FROM jobs WHERE state=?", (JobState.QUEUED.value,)).fetchall()
        return [r["id"] for r in rows]

    def restart_analysis(self, job_id: int) -> JobState:
        """A job found ANALYSING whose analyser died (cluster: its message came back): QUEUED
        again, or FAILED (parked) once it took MAX_ANALYSIS_STARTS analysers down. The new state."""
        with self._tx() as db:
            row = db.execute("SELECT state, analysis_starts FROM jobs WHERE id=? FOR UPDATE",
                             (job_id,)).fetchone()
            if row is None or row["state"] != JobState.ANALYSING.value:
                return JobState(row["state"]) if row else JobState.FAILED
            parked = row["analysis_starts"] >= MAX_ANALYSIS_STARTS
            new = JobState.FAILED if parked else JobState.QUEUED
            db.execute("UPDATE jobs SET state=?, updated=?, error=? WHERE id=?",
                       (new.value, time.time(), _PARKED if parked else None, job_id))
        return new

    def stale_queued(self, before: float, now: float | None = None) -> list[int]:
        """Jobs QUEUED and untouched since before, marked touched now (one caller gets each): in
        cluster mode their analysis message may have been lost with a receiver, so it is published
        again (a duplicate is dropped by the worker)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            rows = db.execute("UPDATE jobs SET updated=? WHERE state=? AND updated<? RETURNING id",
                              (now, JobState.QUEUED.value, before)).fetchall()
        return sorted(r["id"] for r in rows)

    def requeue(self, job_id: int) -> JobRow:
        """Analyse again (`ichnode rerun`, status.rerun: which also says what is sent again)."""
        if self.job(job_id) is None:
            raise IllegalTransition(f"job {job_id} does not exist")
        with self._tx() as db:
            db.execute("UPDATE jobs SET analysis_starts=0 WHERE id=?", (job_id,))
        return self.transition(job_id, JobState.QUEUED, error=None)

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
            db.execute("SELECT key FROM series WHERE key=? FOR UPDATE", (key,))  # one purger at a time
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


def _series(row) -> SeriesRow:
    data = dict(row)
    data["open"] = bool(data["open"])
    return SeriesRow(**data)


def _job(row) -> JobRow:
    data = dict(row)
    data["state"] = JobState(data["state"])
    data["results"] = json.loads(data["results"])
    data["timings"] = json.loads(data["timings"])
    return JobRow(**data)
