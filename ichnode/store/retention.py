"""Retention: delete spooled instances of series whose job is DONE and older than the limit.

Run by the node's scheduler every retention.interval_s. Only the received instances go; the job,
its results and the series row stay, and each purge is recorded in the job store (table `purges`:
files, bytes, when) and in the audit log. A series whose latest job failed or is unfinished keeps
its instances, so `ichnode rerun` still has them.
"""
from __future__ import annotations

import time
from pathlib import Path

from ichnode.audit import Audit
from ichnode.log import get_logger
from ichnode.store.jobs import JobStore
from ichnode.store.spool import Spool

log = get_logger("ichnode.retention")


def purge_expired(store: JobStore, spool: Spool, purge_after_hours: float,
                  now: float | None = None, audit: Audit | None = None) -> list[dict]:
    """Purge every eligible series; returns one record per purged series."""
    now = time.time() if now is None else now
    before = now - purge_after_hours * 3600.0
    done = []
    for key in store.purgeable_series(before):
        series = store.series(key)
        # Under the series' spool lock no instance of it is being written and acknowledged.
        with spool.lock_for(series.study_uid, series.series_uid):
            paths = store.purge_series(key, before, now)
            if paths is None:
                continue  # a late instance reopened it meanwhile
            removed = 0
            for path in map(Path, paths):
                if path.exists():  # an operator may have removed files by hand
                    path.unlink(missing_ok=True)
                    removed += 1
            folder = spool.path_for(series.study_uid, series.series_uid, "0").parent
            try:
                folder.rmdir()  # only when empty; the study folder is left (other series use it)
            except OSError:
                pass
        record = {"study_uid": series.study_uid, "series_uid": series.series_uid,
                  "files": removed, "recorded": len(paths)}
        log.info("series_purged", series=series.series_uid, files=removed,
                 after_hours=purge_after_hours)
        if audit is not None:
            audit.record("series_purged", **record, after_hours=purge_after_hours)
        done.append(record)
    return done
