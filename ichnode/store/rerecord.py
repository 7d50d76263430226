"""Start-up pass: record spooled instances whose job-store record was lost.

Instance records commit without a flush (jobs.py); the spool file, flushed before the success
status, is what proves an instance arrived. After a power cut the last records may be missing:
their files are read again here, before the node accepts associations, so no acknowledged
instance is left out of its series.
"""
from __future__ import annotations

from ichnode.dicom.intake import Refused, inspect_file
from ichnode.errors import DuplicateInstance
from ichnode.log import get_logger
from ichnode.store.jobs import JobStore
from ichnode.store.spool import Spool

log = get_logger("ichnode.rerecord")


def rerecord_spool(spool: Spool, store: JobStore) -> int:
    """Record every spooled instance the job store does not know; returns how many."""
    recorded = store.all_instance_paths()
    count = 0
    for path in spool.instance_files():
        if str(path) in recorded:
            continue
        verdict = inspect_file(path)
        if isinstance(verdict, Refused):
            log.warning("spool_file_unreadable", path=str(path), reason=verdict.reason)
            continue
        stat = path.stat()
        try:
            store.record_instance(
                study_uid=verdict.study_uid, series_uid=verdict.series_uid, sop_uid=verdict.sop_uid,
                path=str(path), size=stat.st_size, calling_aet=None, modality=verdict.modality,
                description=verdict.description, expected_count=verdict.expected_count,
                now=stat.st_mtime)
        except DuplicateInstance:  # the series that has it keeps it
            log.warning("spool_file_duplicate", path=str(path),
                        reason="SOP Instance UID recorded under another series")
            continue
        count += 1
    if count:
        log.warning("instances_rerecorded", count=count,
                    reason="records lost after the files were flushed (power cut?)")
    return count
