"""Disk watermarks for the spool's file system, checked before every instance is written.

Above a watermark the node answers C-STORE with 0xA700 (out of resources) and writes nothing; the
sender keeps the instance and retries later. Below it, service resumes by itself: nothing latches.
Usage is counted like `df` (used / (used + available to unprivileged users)). Space the node
already holds for incoming instances (prepared spool slots) counts as free for an instance that goes
into it: writing there takes no new space.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024


@dataclass(frozen=True)
class DiskState:
    free_mb: float
    used_percent: float


def disk_state(path: Path, incoming_bytes: int = 0, held_bytes: int = 0) -> DiskState:
    """Free space and usage of the file system holding path, as if held_bytes (space the node holds
    for incoming data) were free and incoming_bytes were then written."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent  # the spool folder appears with the first instance
    st = os.statvfs(path)
    avail = st.f_bavail * st.f_frsize + held_bytes - incoming_bytes
    used = (st.f_blocks - st.f_bfree) * st.f_frsize - held_bytes + incoming_bytes
    total = used + avail
    return DiskState(free_mb=avail / MB, used_percent=100.0 * used / total if total > 0 else 100.0)


class DiskGuard:
    """refusal(n, held) says why n more bytes must not be written now, or None when they may;
    held: bytes the node holds ready for them (they count as free)."""

    def __init__(self, path: Path, min_free_mb: float, max_use_percent: float):
        self.path, self.min_free_mb, self.max_use_percent = Path(path), min_free_mb, max_use_percent

    def refusal(self, incoming_bytes: int = 0, held_bytes: int = 0) -> str | None:
        try:
            state = disk_state(self.path, incoming_bytes, held_bytes)
        except OSError as exc:
            return f"cannot read the spool's disk usage: {exc.strerror}"
        if state.free_mb < self.min_free_mb:
            return (f"disk above watermark: {state.free_mb:.0f} MB free after this instance, "
                    f"node.min_free_disk_mb is {self.min_free_mb:g}")
        if state.used_percent > self.max_use_percent:
            return (f"disk above watermark: {state.used_percent:.1f}% used after this instance, "
                    f"node.max_disk_use_percent is {self.max_use_percent:g}")
        return None
