"""One SQLite connection shared by the node's threads behind a lock, in WAL mode."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


def open_shared(path: Path, schema: str, synchronous: str = "NORMAL"
                ) -> tuple[sqlite3.Connection, threading.RLock]:
    """Open (creating) the database at path, apply schema, return the connection and its lock.

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
        db.executescript(schema)
    return db, lock
