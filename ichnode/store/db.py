"""One database connection shared by a process's threads behind a lock, and the schema versions of
the stores that share the database.

The database is a SQLite file (the single node: WAL mode) or a PostgreSQL URL (cluster mode,
ichnode/cluster/). The stores write their SQL once, in the spelling both engines take (`?`
parameters, `RETURNING`, `ON CONFLICT`, `FOR UPDATE` where a row must be locked against another
process); `Database` translates the rest for PostgreSQL (parameters, types, `BEGIN IMMEDIATE`,
SQLite's pragmas) and drops the row locks for SQLite, where a write transaction already holds the
whole file.

Each store (the job store, the outbox, the worklist) owns its tables and a list of migrations;
the `schema_versions` table holds how many of each owner's migrations have run. A new database
gets the newest tables from the schema and all migrations marked as run; a database made by an
earlier version runs the ones it lacks, in order, at start. A database from a newer ichnode (more
migrations than this one knows) is refused rather than misread.
"""
from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ichnode.errors import ConfigError

POSTGRESQL = ("postgresql://", "postgres://")
_ROW_LOCKS = re.compile(r"\s+FOR UPDATE( SKIP LOCKED)?")
_PG_TYPES = ((re.compile(r"INTEGER PRIMARY KEY AUTOINCREMENT"), "BIGSERIAL PRIMARY KEY"),
             (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"))
_MIGRATION_LOCK = 7_391_001  # pg_advisory_xact_lock key: one process migrates at a time


def is_postgresql(target: str | Path) -> bool:
    return str(target).startswith(POSTGRESQL)


def redact(url: str | None) -> str | None:
    """A URL as it may be shown: without its password."""
    return None if url is None else re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)


class Database:
    """The few calls the stores make (execute, executemany, close), on either engine."""

    def __init__(self, target: str | Path, synchronous: str):
        self.postgresql = is_postgresql(target)
        if self.postgresql:
            import psycopg  # only cluster mode needs it (the ichnode[cluster] extra)

            self._raw = psycopg.connect(str(target), autocommit=True, row_factory=_pg_rows)
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._raw = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._raw.row_factory = sqlite3.Row
            self._raw.execute("PRAGMA journal_mode=WAL")
            self._raw.execute(f"PRAGMA synchronous={synchronous}")

    def execute(self, sql: str, args: Sequence = ()):
        return self._raw.execute(*self._translate(sql, args))

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> None:
        sql, _ = self._translate(sql, ())
        if self.postgresql:
            with self._raw.cursor() as cursor:
                cursor.executemany(sql, rows)
        else:
            self._raw.executemany(sql, rows)

    def close(self) -> None:
        self._raw.close()

    def tables(self) -> set[str]:
        if self.postgresql:
            rows = self._raw.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        else:
            rows = self._raw.execute("SELECT name FROM sqlite_master WHERE type='table'")
        return {r[0] for r in rows}

    def columns(self, table: str) -> set[str]:
        if self.postgresql:
            rows = self._raw.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                                     (table,))
        else:
            rows = self._raw.execute(f"PRAGMA table_info({table})")
            return {r["name"] for r in rows}
        return {r[0] for r in rows}

    def _translate(self, sql: str, args: Sequence) -> tuple:
        if not self.postgresql:
            return (_ROW_LOCKS.sub("", sql), tuple(args))
        if sql.startswith("PRAGMA"):
            return ("SELECT 1", ())  # durability is the server's (synchronous_commit)
        sql = sql.replace("BEGIN IMMEDIATE", "BEGIN").replace("%", "%%").replace("?", "%s")
        if sql.lstrip().startswith("CREATE"):
            for pattern, replacement in _PG_TYPES:
                sql = pattern.sub(replacement, sql)
        return (sql, tuple(args))


class _PgRow(tuple):
    """A row read by name or by position, like sqlite3.Row."""
    names: tuple[str, ...] = ()

    def __getitem__(self, key):
        return super().__getitem__(self.names.index(key) if isinstance(key, str) else key)

    def keys(self) -> tuple[str, ...]:
        return self.names


def _pg_rows(cursor):
    names = tuple(c.name for c in cursor.description or ())
    row_type = type("Row", (_PgRow,), {"names": names})
    return lambda values: row_type(values)


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception) under the lock, optionally at another
    synchronous level (the pragma cannot change inside a transaction, so it is set before and
    restored after; SQLite only)."""

    def __init__(self, db: Database, lock: threading.RLock, level: str | None = None,
                 usual: str | None = None):
        self._db, self._lock, self._level, self._usual = db, lock, level, usual

    def __enter__(self) -> Database:
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


Migration = Callable[[Database], None]


def open_shared(target: str | Path, schema: str, synchronous: str = "NORMAL", *, owner: str,
                migrations: Sequence[Migration] = ()) -> tuple[Database, threading.RLock]:
    """Open (creating) the database, bring owner's tables to the newest version, return the
    connection and its lock. target: a SQLite file, or a postgresql:// URL.

    synchronous=FULL where a commit must be durable before an answer goes out (the job store).
    """
    db = Database(target, synchronous)
    lock = threading.RLock()
    # One transaction: two processes opening one database migrate one after the other.
    with Transaction(db, lock):
        _migrate(db, target, schema, owner, migrations)
    return db, lock


def _migrate(db: Database, target, schema: str, owner: str, migrations: Sequence[Migration]) -> None:
    if db.postgresql:
        db.execute(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
    db.execute("CREATE TABLE IF NOT EXISTS schema_versions "
               "(owner TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    row = db.execute("SELECT version FROM schema_versions WHERE owner=?", (owner,)).fetchone()
    # Without a record: a new database (nothing to migrate) or a SQLite file from before
    # versions existed (every migration checks what it changes, so running them all is safe).
    existed = not db.postgresql and bool(db.tables() - {"schema_versions"})
    version = row["version"] if row is not None else (0 if existed else len(migrations))
    if version > len(migrations):
        raise ConfigError(f"{redact(str(target))}: {owner} tables are at schema version {version}, "
                          f"newer than this ichnode knows ({len(migrations)}): start the newer version")
    for statement in filter(str.strip, schema.split(";")):
        db.execute(statement)
    for migration in migrations[version:]:
        migration(db)
    db.execute("INSERT INTO schema_versions VALUES (?, ?) ON CONFLICT (owner) DO UPDATE"
               " SET version = excluded.version", (owner, len(migrations)))
