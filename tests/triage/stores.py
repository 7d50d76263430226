"""Worklist rows on a real job store (same SQLite file, as in the node), for triage and web tests."""
from __future__ import annotations

import time

from ichnode.store.jobs import JobState, JobStore
from ichnode.triage.worklist import WorklistStore

ROW = dict(priority="critical", priority_rank=0, reason="ICH 42.0 mL supratentorial > 30 mL | test",
           flags=["ICH"], volumes={"ICH": 42.0}, probabilities={"any": 0.93}, total_ml=42.0,
           abc2_ml=39.5, abc2_ratio=0.94, lesion_count=1, iph_location=None,
           models=[{"name": "ichnode-classical-hu", "version": "0.1.0"}], thumbnail=None,
           key_images=[], patient_name="DOE^JANE", patient_id="PID-123", accession="ACC42",
           study_description="CT HEAD", series_description="Head 5mm", study_date="20250102",
           study_time="101500", modality="CT", scanner_model="synthetic head phantom", slices=30)


class Stores:
    def __init__(self, path):
        self.jobs = JobStore(path)
        self.worklist = WorklistStore(path)
        self._n = 0

    def job(self, series: str | None = None, state: JobState = JobState.DONE,
            arrived: float | None = None, **row) -> int:
        self._n += 1
        series = series or f"1.2.3.{self._n}"
        self.jobs.record_instance(study_uid="1.2.3", series_uid=series, sop_uid=f"{series}.1.{self._n}",
                                  path="/x", size=1, calling_aet="T", modality="CT",
                                  description="Head", expected_count=None)
        job_id = self.jobs.close_series(f"1.2.3/{series}")
        for step in (JobState.ANALYSING, JobState.SENDING, JobState.DONE):
            if state is JobState.QUEUED:
                break
            self.jobs.transition(job_id, step)
            if step is state:
                break
        values = {**ROW, **row}
        self.worklist.upsert(job_id, series_key=f"1.2.3/{series}", study_uid="1.2.3", series_uid=series,
                             arrived=time.time() - 30 if arrived is None else arrived,
                             analysed=time.time(), **values)
        return job_id

    def close(self):
        self.worklist.close()
        self.jobs.close()
