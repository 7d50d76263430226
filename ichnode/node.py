"""The running node: SCP + APScheduler (completion sweep, analysis worker, send retries).

Analysis runs on a single-thread executor (CPU-bound, bounded memory); sends and the sweep run on
the default pool so a slow destination never delays the next analysis.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from ichnode.audit import Audit
from ichnode.config import Config
from ichnode.dicom.scp import StoreHandler, start_scp
from ichnode.errors import IllegalTransition
from ichnode.infer.engine import InferenceEngine, build_models
from ichnode.log import get_logger
from ichnode.pipeline import Pipeline
from ichnode.store.disk import DiskGuard
from ichnode.store.jobs import JobState, JobStore, SeriesRow
from ichnode.store.rerecord import rerecord_spool
from ichnode.store.retention import purge_expired
from ichnode.store.spool import Spool
from ichnode.triage.service import Triage

log = get_logger("ichnode.node")
SWEEP_JOB = "completion-sweep"
RETENTION_JOB = "retention-purge"


class Node:
    def __init__(self, config: Config, engine: InferenceEngine | None = None):
        self.config = config
        self.spool = Spool(config.spool_dir)
        self.store = JobStore(config.db_path)
        self.engine = engine or InferenceEngine(build_models(config.engine))
        self.audit = Audit.for_data_dir(config.data_dir)
        self.triage = Triage(config, self.store, self.engine.infos)  # worklist, notify, metrics
        self.pipeline = Pipeline(config, self.store, self.engine, events=self.triage,
                                 audit=self.audit, before_read=self.spool.settle)
        self.triage.metrics.watch_slots(lambda: self.spool.slots.ready if self.spool.slots else 0)
        self.disk_guard = DiskGuard(config.spool_dir, config.node.min_free_disk_mb,
                                    config.node.max_disk_use_percent)
        self.store_handler: StoreHandler | None = None
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(4), "analysis": ThreadPoolExecutor(1)},
            job_defaults={"misfire_grace_time": None, "coalesce": True},
        )
        self._server = None
        self._sweep_lock = threading.Lock()
        self._submitted: set[int] = set()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self, port: int | None = None) -> "Node":
        removed = self.spool.remove_partials()
        removed += Spool(self.config.results_dir).remove_partials()  # results written at a crash
        spool, placed = self.config.spool, 0
        if spool.prepared_slots:
            placed = self.spool.use_slots(spool.prepared_slots, spool.slot_kb * 1024,
                                 may_grow=lambda size: self.disk_guard.refusal(size) is None)
        rerecorded = rerecord_spool(self.spool, self.store)
        resumed = self.store.recover()
        self.scheduler.start()
        self.scheduler.add_job(self.sweep, "interval", id=SWEEP_JOB,
                               seconds=self.config.assembly.sweep_interval_s, max_instances=1)
        if self.config.retention.purge_after_hours is not None:
            self.scheduler.add_job(self.purge, "interval", id=RETENTION_JOB, max_instances=1,
                                   seconds=self.config.retention.interval_s)
        handler = StoreHandler(self.spool, self.store, on_stored=self._on_stored,
                               max_bytes=int(self.config.node.max_instance_mb * 1024 * 1024),
                               disk_guard=self.disk_guard, audit=self.audit)
        self.store_handler = handler
        self._server = start_scp(self.config, handler, port)
        self.triage.start(handler)
        self.audit.record("node_started", ae_title=self.config.node.ae_title, port=self.port,
                          partial_files_removed=removed, slots_placed=placed,
                          instances_rerecorded=rerecorded,
                          jobs_resumed=len(resumed), tls=self.config.tls.cert is not None)
        log.info("node_started", ae_title=self.config.node.ae_title, port=self.port,
                 partial_files_removed=removed, jobs_resumed=len(resumed),
                 models=[f"{i.name} {i.version}" for i in self.engine.infos])
        return self

    def stop(self) -> None:
        # Inputs first (DICOM, then the web server's STOW-RS), so no image arrives once the
        # spool is closed; then the jobs in progress finish; then what they write to.
        if self._server is not None:
            self._server.shutdown()
        self.triage.stop_input()
        self.scheduler.shutdown(wait=True)
        self.spool.close()
        self.triage.stop()
        self.store.close()
        self.audit.record("node_stopped")
        self.audit.close()
        log.info("node_stopped")

    def purge(self, now: float | None = None) -> list[dict]:
        """Retention: delete spooled instances of series DONE longer than purge_after_hours."""
        hours = self.config.retention.purge_after_hours
        if hours is None:
            return []
        purged = purge_expired(self.store, self.spool, hours, now=now, audit=self.audit)
        for record in purged:
            self.triage.worklist.forget_patient(record["series_uid"])
        return purged

    def _on_stored(self, series: SeriesRow) -> None:
        self.triage.on_stored(series)
        expected = self.config.assembly.expected_count or series.expected_count
        if expected and series.instance_count >= expected:
            # Complete by count: sweep now rather than at the next tick.
            self.scheduler.modify_job(SWEEP_JOB, next_run_time=datetime.now(timezone.utc))

    def sweep(self) -> None:
        """Close complete series into jobs; resend jobs whose retry time has come."""
        with self._sweep_lock:
            now = time.time()
            for series in self.store.due_series(now, self.config.assembly.quiet_seconds,
                                                self.config.assembly.expected_count):
                job_id = self.store.close_series(series.key, now)
                log.info("series_complete", series=series.series_uid, job=job_id,
                         instances=series.instance_count)
                self.audit.record("series_complete", study_uid=series.study_uid,
                                  series_uid=series.series_uid, job=job_id,
                                  instances=series.instance_count, generation=series.generation)
            # Queued jobs: new ones, resumed after a crash, or asked for by `ichnode rerun`.
            for job in self.store.jobs((JobState.QUEUED,)):
                if job.id not in self._submitted:
                    self._submitted.add(job.id)
                    self._submit_analysis(job.id)
            for job in self.store.due_retries(now):
                self.scheduler.add_job(self._guarded, args=[self.pipeline.send_job, job.id],
                                       id=f"send-{job.id}", replace_existing=True)

    def _submit_analysis(self, job_id: int) -> None:
        self.scheduler.add_job(self._analyse, args=[job_id], executor="analysis",
                               id=f"job-{job_id}", replace_existing=True)

    def _analyse(self, job_id: int) -> None:
        try:
            self._guarded(self.pipeline.run_job, job_id)
        finally:
            self._submitted.discard(job_id)

    def _guarded(self, step, job_id: int) -> None:
        try:
            step(job_id)
        except IllegalTransition as exc:
            # A late instance superseded this job while it ran; the newer job carries on.
            state = self.store.job(job_id).state
            if state is not JobState.SUPERSEDED:
                log.error("job_state_error", job=job_id, error=str(exc))
        except Exception:  # noqa: BLE001 - scheduler threads must never die silently
            log.exception("job_step_crashed", job=job_id)

