"""Worklist rows on a real job store (same SQLite file, as in the node), for triage and web tests."""
from __future__ import annotations

import time

from ichnode.config import Config, NotifyConfig
from ichnode.delivery.channel import Context
from ichnode.delivery.dispatcher import Dispatcher
from ichnode.retry import RetryPolicy
from ichnode.store.jobs import JobState, JobStore
from ichnode.store.outbox import Outbox, Purpose
from ichnode.triage.service import Triage
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
        self.path = path
        self.jobs = JobStore(path)
        self.outbox = Outbox(path)
        self.worklist = WorklistStore(path, self.jobs)
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
        self.outbox.close()
        self.jobs.close()


class Notifying:
    """The node's notification path on these stores: Triage owes the messages (outbox rows) and the
    Dispatcher sends them, as in a running node; enqueue/run_due drive it step by step, start/stop
    as the node's dispatcher thread."""

    def __init__(self, stores: Stores, notify: NotifyConfig):
        config = Config(data_dir=stores.path.parent, notify=notify)
        self.triage = Triage(config, stores.jobs, stores.outbox)
        self.metrics = self.triage.metrics
        self.dispatcher = Dispatcher(stores.outbox, Context(config, stores.worklist.get),
                                     {Purpose.NOTIFICATION: RetryPolicy.of(notify)},
                                     on_outcome=self.triage.on_notification)

    def enqueue(self, job_id: int) -> int:
        return self.triage.notify(job_id)

    def run_due(self, now: float | None = None) -> int:
        return self.dispatcher.run_due(now)

    def start(self) -> "Notifying":
        self.dispatcher.start()
        return self

    def stop(self) -> None:
        self.dispatcher.stop()
        self.triage.close()
