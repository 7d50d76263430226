"""On-disk spool of received instances, each flushed before it is acknowledged.

Two ways to write one: into a prepared slot (slots.py: one data flush; the rename to its name
follows off the C-STORE path), or, when none is ready, temp file + fsync + rename + directory
fsync. Either way a file is visible under its final name only once its bytes are durable, so a
crash never leaves a partly written file that could be taken for an instance.
"""
from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from pathlib import Path

from ichnode.log import get_logger
from ichnode.store import slots as slotting
from ichnode.store.durable import fsync_dir

_TMP_SUFFIX = ".partial"
log = get_logger("ichnode.spool")


def _safe(uid: str) -> str:
    """A file-name component from a UID; a hostile UID cannot escape the spool."""
    if uid and all(c.isdigit() or c == "." for c in uid) and len(uid) <= 64:
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:32]


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.slots: slotting.SlotPool | None = None
        self._unplaced: queue.Queue[tuple[Path, Path]] = queue.Queue()  # (filled slot, its name)
        # Striped per-series locks: the C-STORE handler holds one around write + record, the
        # retention purge around delete, so a purge never removes an instance being acknowledged.
        self._locks = tuple(threading.Lock() for _ in range(64))

    def lock_for(self, study_uid: str, series_uid: str) -> threading.Lock:
        key = f"{study_uid}/{series_uid}".encode("utf-8", "replace")
        return self._locks[int.from_bytes(hashlib.blake2b(key, digest_size=2).digest(), "big") % 64]

    def use_slots(self, count: int, slot_bytes: int, may_grow=lambda size: True) -> int:
        """Write instances into prepared slots from now on (see slots.py). Finishes what a power
        cut interrupted first; returns how many flushed instances that placed."""
        self.slots = slotting.SlotPool(self.root / ".slots", count, slot_bytes, may_grow)
        placed = self.slots.recover(self._place_recovered)
        for path in self.instance_files():  # placed just now, or renamed before a power cut
            if path.stat().st_size >= slot_bytes // 2:  # only slot-written files can need a cut
                slotting.trim(path, verify=True)
        threading.Thread(target=self._place_loop, name="spool-place", daemon=True).start()
        self.slots.start()
        return placed

    def close(self) -> None:
        if self.slots is not None:
            self.slots.stop()
            self.settle()

    def settle(self) -> None:
        """Wait until every filled slot has its instance's name and bytes (before reading)."""
        if self.slots is not None:
            self._unplaced.join()

    def _place_loop(self) -> None:
        while True:
            slot, path = self._unplaced.get()
            try:
                try:
                    os.replace(slot, path)
                except FileNotFoundError:  # the series' first instance
                    _make_dirs(path.parent)
                    os.replace(slot, path)
                slotting.trim(path)
            except OSError as exc:  # the instance is flushed in its slot: the next start places it
                log.error("spool_place_failed", reason=str(exc))
            finally:
                self._unplaced.task_done()

    def _place_recovered(self, slot: Path) -> bool:
        from ichnode.dicom.intake import Refused, inspect_file  # the spool's only DICOM reading

        verdict = inspect_file(slot)
        if isinstance(verdict, Refused):
            return False
        path = self.path_for(verdict.study_uid, verdict.series_uid, verdict.sop_uid)
        _make_dirs(path.parent)
        os.replace(slot, path)
        fsync_dir(path.parent)
        return True

    def same_content(self, path: Path, chunks) -> bool:
        """Whether path exists and holds exactly the bytes of chunks (a re-sent instance)."""
        self.settle()
        try:
            with open(path, "rb") as fh:
                for chunk in chunks:
                    if fh.read(len(chunk)) != chunk:
                        return False
                return fh.read(1) == b""
        except FileNotFoundError:
            return False

    def held_for(self, size: int) -> int:
        """Disk space held in ready slots for an instance of size bytes (0: it needs new space).
        Another association may take the last slot first; that instance is then written the
        ordinary way, at most one slot's worth past the watermark."""
        if self.slots is None or not self.slots.fits(size):
            return 0
        return self.slots.ready * self.slots.slot_bytes

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return self.root / _safe(study_uid) / _safe(series_uid) / f"{_safe(sop_uid)}.dcm"

    def write(self, path: Path, chunks) -> int:
        """Write bytes (bytes-like chunks; a list when slots are in use) durably to path; return
        the size."""
        slot = None
        if self.slots is not None:
            size = sum(len(chunk) for chunk in chunks)
            slot = self.slots.take(size)
        if slot is None:
            return self._write_new(path, chunks)
        try:
            self.slots.fill(slot, chunks, size)
        except BaseException:
            slot.unlink(missing_ok=True)
            raise
        self._unplaced.put((slot, path))
        return size

    def _write_new(self, path: Path, chunks) -> int:
        self.settle()  # a slot still on its way to the same name must not land over this write
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
        fsync_dir(path.parent)
        return size

    def instance_files(self):
        """Every spooled instance (study/series/instance.dcm, as path_for names them)."""
        return self.root.glob("*/*/*.dcm") if self.root.exists() else iter(())

    def remove_partials(self, older_than_s: float = 0.0) -> int:
        """Delete leftovers of writes interrupted by a crash; return how many. older_than_s: only
        those not written to for that long (a spool shared with other live receivers)."""
        count, before = 0, time.time() - older_than_s
        if self.root.exists():
            for leftover in self.root.rglob(f"*{_TMP_SUFFIX}"):
                try:
                    if older_than_s and leftover.stat().st_mtime > before:
                        continue
                    leftover.unlink()
                except FileNotFoundError:
                    continue
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
        fsync_dir(new.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Durable write of one small file (results, truth files)."""
    Spool(path.parent).write(path, [data])
