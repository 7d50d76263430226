"""Append-only audit trail: one JSON object per line in `data_dir/audit.jsonl`.

What is recorded: associations (accepted, rejected, refused, closed with their counts), instances
refused, series completed, analyses, sends, purges. Identifiers are UIDs, AE titles, addresses and
digests; never patient names, IDs or other demographics. The audit has no field that could carry
them, and `record` refuses keys that name them, so a careless call fails loudly in tests instead
of leaking.

Each record is one `os.write` on a file opened with O_APPEND (atomic position, never overwrites
earlier lines) followed by fsync: an audit line written before a crash is still there after it.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

AUDIT_FILE = "audit.jsonl"
# Keys that would name a person. Checked case-insensitively with the underscores dropped.
_FORBIDDEN = {"patientname", "patientid", "patient", "birthdate", "patientbirthdate",
              "otherpatientids", "accessionnumber", "issuerofpatientid"}
_SCALARS = (str, int, float, bool, type(None))


class Audit:
    """Thread-safe append-only JSON-lines writer; `Audit.disabled()` records nothing."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._fd: int | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> "Audit":
        return cls(Path(data_dir) / AUDIT_FILE)

    @classmethod
    def disabled(cls) -> "Audit":
        return cls(None)

    def record(self, event: str, **fields) -> None:
        """Append one record: {"ts", "event", **fields}. Values are scalars or lists of scalars."""
        for key, value in fields.items():
            if key.replace("_", "").lower() in _FORBIDDEN:
                raise ValueError(f"audit field {key!r} could carry patient data; use a UID or digest")
            items = value if isinstance(value, (list, tuple)) else [value]
            if not all(isinstance(v, _SCALARS) for v in items):
                raise TypeError(f"audit field {key!r}: only scalars or lists of scalars, "
                                f"got {type(value).__name__}")
        if self._fd is None:
            return
        line = json.dumps({"ts": round(time.time(), 3), "event": event, **fields},
                          separators=(",", ":"), default=str) + "\n"
        data = line.encode("utf-8")
        with self._lock:
            if self._fd is None:
                return
            os.write(self._fd, data)
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_audit(path: Path) -> list[dict]:
    """All records of an audit file (tests and tooling)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
