"""On-disk spool of received instances: temp file + fsync + rename + directory fsync.

A file is visible under its final name only once its bytes are durable, so a crash never leaves a
partly written file that could be taken for an instance.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

_TMP_SUFFIX = ".partial"


def _safe(uid: str) -> str:
    """A file-name component from a UID; a hostile UID cannot escape the spool."""
    if uid and all(c.isdigit() or c == "." for c in uid) and len(uid) <= 64:
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:32]


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root)
        # Striped per-series locks: the C-STORE handler holds one around write + record, the
        # retention purge around delete, so a purge never removes an instance being acknowledged.
        self._locks = tuple(threading.Lock() for _ in range(64))

    def lock_for(self, study_uid: str, series_uid: str) -> threading.Lock:
        key = f"{study_uid}/{series_uid}".encode("utf-8", "replace")
        return self._locks[int.from_bytes(hashlib.blake2b(key, digest_size=2).digest(), "big") % 64]

    @staticmethod
    def same_content(path: Path, chunks) -> bool:
        """Whether path exists and holds exactly the bytes of chunks (a re-sent instance)."""
        try:
            with open(path, "rb") as fh:
                for chunk in chunks:
                    if fh.read(len(chunk)) != chunk:
                        return False
                return fh.read(1) == b""
        except FileNotFoundError:
            return False

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return self.root / _safe(study_uid) / _safe(series_uid) / f"{_safe(sop_uid)}.dcm"

    def write(self, path: Path, chunks) -> int:
        """Write bytes (an iterable of bytes-like chunks) durably to path; return the size."""
        tmp = path.with_name(path.name + f".{os.getpid()}.{id(chunks)}{_TMP_SUFFIX}")
        size = 0
        try:
            fh = open(tmp, "wb")
        except FileNotFoundError:  # the series' first instance (not checked per call: it costs)
            _make_dirs(path.parent)
            fh = open(tmp, "wb")
        try:
            with fh:
                for chunk in chunks:
                    fh.write(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return size

    def instance_files(self):
        """Every spooled instance (study/series/instance.dcm, as path_for names them)."""
        return self.root.glob("*/*/*.dcm") if self.root.exists() else iter(())

    def remove_partials(self) -> int:
        """Delete leftovers of writes interrupted by a crash; return how many."""
        count = 0
        if self.root.exists():
            for leftover in self.root.rglob(f"*{_TMP_SUFFIX}"):
                leftover.unlink(missing_ok=True)
                count += 1
        return count


def _make_dirs(directory: Path) -> None:
    """mkdir -p, with each new directory's entry flushed in its parent (else a power cut could
    lose the series directory, and the flushed files in it with it)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        _fsync_dir(new.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Durable write of one small file (results, truth files)."""
    Spool(path.parent).write(path, [data])
