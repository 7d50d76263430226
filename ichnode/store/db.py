"""One SQLite connection shared by the node's threads behind a lock, in WAL mode, and the schema
versions of the stores that share the file.

Each store (the job store, the worklist) owns its tables and a list of migrations; the file's
`schema_versions` table holds how many of each owner's migrations have run. A new database gets
the newest tables from the schema and all migrations marked as run; a database made by an earlier
version runs the ones it lacks, in order, at start. A database from a newer ichnode (more
migrations than this one knows) is refused rather than misread.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ichnode.errors import ConfigError

Migration = Callable[[sqlite3.Connection], None]


def open_shared(path: Path, schema: str, synchronous: str = "NORMAL", *, owner: str,
                migrations: Sequence[Migration] = ()) -> tuple[sqlite3.Connection, threading.RLock]:
    """Open (creating) the database at path, bring owner's tables to the newest version, return the
    connection and its lock.

    synchronous=FULL where a commit must be durable before an answer goes out (the job store).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.row_factory = sqlite3.Row
    lock = threading.RLock()
    with lock:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        _migrate(db, path, schema, owner, migrations)
    return db, lock


def _migrate(db: sqlite3.Connection, path: Path, schema: str, owner: str,
             migrations: Sequence[Migration]) -> None:
    db.execute("BEGIN IMMEDIATE")  # two processes opening one file migrate one after the other
    try:
        db.execute("CREATE TABLE IF NOT EXISTS schema_versions "
                   "(owner TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_versions WHERE owner=?", (owner,)).fetchone()
        existed = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='table' "
                             "AND name != 'schema_versions'").fetchone()[0] > 0
        # Without a record: a new file (nothing to migrate) or one from before versions existed
        # (every migration checks what it changes, so running them all is safe).
        version = row["version"] if row is not None else (0 if existed else len(migrations))
        if version > len(migrations):
            raise ConfigError(f"{path}: {owner} tables are at schema version {version}, newer than "
                              f"this ichnode knows ({len(migrations)}): start the newer version")
        for statement in filter(str.strip, schema.split(";")):
            db.execute(statement)
        for migration in migrations[version:]:
            migration(db)
        db.execute("INSERT OR REPLACE INTO schema_versions VALUES (?, ?)", (owner, len(migrations)))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
