"""The running node: its parts built with their dependencies, started and stopped in one order.

Parts (Node._parts), started in this order and stopped in the reverse one:
  spool       removes partial files, places prepared slots; stop: ends slot preparation
  dispatcher  sends what the outbox owes (results, notifications; ichnode.delivery)
  scheduler   APScheduler: completion sweep, analysis worker, retention purge
  web         worklist app and STOW-RS input (when web.enabled)
  dicom       the C-STORE SCP
So inputs stop first (nothing arrives once the spool is closed), then the analyses in progress
finish and owe their results, then the dispatcher finishes what is in flight; the stores close last.

Roles: "single" (the default) is all of the above in one process. "receiver" (cluster mode,
ichnode/cluster/) has no dispatcher and no analysis: its sweep publishes each completed series'
job to RabbitMQ, and workers (ichnode.cluster.worker) analyse and deliver.

Analysis runs on a single-thread executor (CPU-bound, bounded memory); the sweep runs on the
default pool, and sending on the dispatcher's own threads, so a slow destination never delays the
next analysis.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from ichnode.audit import Audit
from ichnode.config import Config
from ichnode.delivery.channel import Context
from ichnode.delivery.dispatcher import Dispatcher, Outcome
from ichnode.dicom.scp import StoreHandler, start_scp
from ichnode.errors import IllegalTransition
from ichnode.infer.engine import InferenceEngine, build_models
from ichnode.log import get_logger
from ichnode.pipeline import Pipeline
from ichnode.retry import RetryPolicy
from ichnode.store.disk import DiskGuard
from ichnode.store.jobs import JobState, JobStore, SeriesRow
from ichnode.store.outbox import Outbox, Purpose
from ichnode.store.rerecord import rerecord_spool
from ichnode.store.retention import purge_expired
from ichnode.store.spool import Spool
from ichnode.triage.service import Triage

log = get_logger("ichnode.node")
SWEEP_JOB = "completion-sweep"
RETENTION_JOB = "retention-purge"
SINGLE, RECEIVER = "single", "receiver"


@dataclass(frozen=True)
class Part:
    name: str
    start: Callable[[], None]
    stop: Callable[[], None]


@dataclass(frozen=True)
class Processing:
    """What analyses a job and delivers its results: the single node's, or a cluster worker's."""
    engine: InferenceEngine
    triage: Triage
    pipeline: Pipeline
    dispatcher: Dispatcher


def build_processing(config: Config, store: JobStore, outbox: Outbox, audit: Audit, *,
                     before_read: Callable[[], None], engine: InferenceEngine | None = None) -> Processing:
    engine = engine or InferenceEngine(build_models(config.engine))
    triage = Triage(config, store, outbox, engine.infos)  # worklist, notifications, metrics
    pipeline = Pipeline(config, store, outbox, engine, events=triage, audit=audit, before_read=before_read)

    def on_outcome(outcome: Outcome) -> None:
        if outcome.purpose is Purpose.RESULT:
            pipeline.on_delivery(outcome)
        else:
            triage.on_notification(outcome)

    def is_current(job_id: int) -> bool:
        job = store.job(job_id)
        return job is not None and job.state is not JobState.SUPERSEDED

    policies = {Purpose.RESULT: RetryPolicy.of(config.sender), Purpose.NOTIFICATION: RetryPolicy.of(config.notify)}
    dispatcher = Dispatcher(outbox, Context(config, triage.worklist.get), policies,
                            on_outcome=on_outcome, is_current=is_current)
    return Processing(engine, triage, pipeline, dispatcher)


class Node:
    def __init__(self, config: Config, engine: InferenceEngine | None = None, role: str = SINGLE):
        self.config, self.role = config, role
        self.spool = Spool(config.spool_dir)
        self.store = JobStore(config.database)
        self.outbox = Outbox(config.database)
        self.audit = Audit.for_data_dir(config.data_dir)
        if role == SINGLE:
            self.processing = build_processing(config, self.store, self.outbox, self.audit,
                                               before_read=self.spool.settle, engine=engine)
            self.triage, self.publisher = self.processing.triage, None
        else:
            from ichnode.cluster.broker import Publisher  # kombu: only cluster mode needs it

            self.processing, self.publisher = None, Publisher(config.cluster.broker_url)
            self.triage = Triage(config, self.store, self.outbox)  # the worklist web app, metrics
        self.triage.metrics.watch_slots(lambda: self.spool.slots.ready if self.spool.slots else 0)
        self.disk_guard = DiskGuard(config.spool_dir, config.node.min_free_disk_mb,
                                    config.node.max_disk_use_percent)
        self.store_handler = StoreHandler(self.spool, self.store, on_stored=self._on_stored,
                                          max_bytes=int(config.node.max_instance_mb * 1024 * 1024),
                                          disk_guard=self.disk_guard, audit=self.audit)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(4), "analysis": ThreadPoolExecutor(1)},
            job_defaults={"misfire_grace_time": None, "coalesce": True},
        )
        self.web = None  # ichnode.web.server.WebServer while running, when web.enabled
        self._server = None
        self._started: list[Part] = []
        self._sweep_lock = threading.Lock()
        self._submitted: set[int] = set()
        self._facts: dict = {}

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def pipeline(self) -> Pipeline:
        return self.processing.pipeline

    def _parts(self, port: int | None) -> list[Part]:
        parts = [Part("spool", self._start_spool, self.spool.close)]
        if self.processing is not None:
            parts.append(Part("dispatcher", self.processing.dispatcher.start, self.processing.dispatcher.stop))
        return parts + [
            Part("scheduler", self._start_scheduler, lambda: self.scheduler.shutdown(wait=True)),
            Part("web", self._start_web, self._stop_web),
            Part("dicom", lambda: self._start_dicom(port), lambda: self._server.shutdown()),
        ]

    def start(self, port: int | None = None) -> "Node":
        try:
            for part in self._parts(port):
                part.start()
                self._started.append(part)
        except BaseException:
            self._stop_parts()
            raise
        self.audit.record("node_started", ae_title=self.config.node.ae_title, port=self.port, role=self.role,
                          tls=self.config.tls.cert is not None, **self._facts)
        log.info("node_started", ae_title=self.config.node.ae_title, port=self.port, role=self.role,
                 partial_files_removed=self._facts["partial_files_removed"],
                 jobs_resumed=self._facts.get("jobs_resumed"),
                 models=[f"{i.name} {i.version}" for i in self.processing.engine.infos] if self.processing else [])
        return self

    def stop(self) -> None:
        self._stop_parts()
        if self.publisher is not None:
            self.publisher.close()
        self.triage.close()
        self.outbox.close()
        self.store.close()
        self.audit.record("node_stopped")
        self.audit.close()
        log.info("node_stopped")

    def _stop_parts(self) -> None:
        while self._started:
            part = self._started.pop()
            try:
                part.stop()
            except Exception:  # noqa: BLE001 - the other parts must still stop
                log.exception("part_stop_failed", part=part.name)

    def _start_spool(self) -> None:
        # A shared spool (cluster) holds other receivers' writes in progress: only what is older
        # than any association can be is a crash's leftover there.
        age = 0.0 if self.role == SINGLE else self.config.node.max_association_s
        removed = self.spool.remove_partials(older_than_s=age)
        removed += Spool(self.config.results_dir).remove_partials(older_than_s=age)  # results written at a crash
        spool, placed = self.config.spool, 0
        if spool.prepared_slots:
            placed = self.spool.use_slots(spool.prepared_slots, spool.slot_kb * 1024,
                                          may_grow=lambda size: self.disk_guard.refusal(size) is None)
        self._facts.update(partial_files_removed=removed, slots_placed=placed,
                           instances_rerecorded=rerecord_spool(self.spool, self.store))

    def _start_scheduler(self) -> None:
        if self.processing is not None:  # cluster: the broker gives a dead worker's job to another
            resumed = self.store.recover()
            for job in self.store.jobs((JobState.SENDING,)):  # owed before a crash or an upgrade
                self.pipeline.queue_delivery(job.id)
            self._facts["jobs_resumed"] = len(resumed)
        self.scheduler.start()
        self.scheduler.add_job(self.sweep, "interval", id=SWEEP_JOB,
                               seconds=self.config.assembly.sweep_interval_s, max_instances=1)
        if self.config.retention.purge_after_hours is not None:
            self.scheduler.add_job(self.purge, "interval", id=RETENTION_JOB, max_instances=1,
                                   seconds=self.config.retention.interval_s)

    def _start_web(self) -> None:
        if not self.config.web.enabled:
            return
        from ichnode.web.app import build_app  # the web stack loads only when it is on
        from ichnode.web.server import WebServer

        app = build_app(self.config.web, self.triage.worklist, self.outbox, self.triage.metrics,
                        self.config.results_dir, self.store_handler)
        self.web = WebServer(app, self.config.web).start()
        log.info("web_started", host=self.config.web.host, port=self.web.port,
                 tls=self.config.web.tls_cert is not None)

    def _stop_web(self) -> None:
        if self.web is not None:
            self.web.stop()
            self.web = None

    def _start_dicom(self, port: int | None) -> None:
        self._server = start_scp(self.config, self.store_handler, port)

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
        """Close complete series into jobs and start their analysis (here, or on a worker)."""
        with self._sweep_lock:
            now = time.time()
            for series in self.store.due_series(now, self.config.assembly.quiet_seconds,
                                                self.config.assembly.expected_count):
                job_id = self.store.close_series(series.key, now)
                if job_id is None:
                    continue  # another receiver completed it first
                log.info("series_complete", series=series.series_uid, job=job_id,
                         instances=series.instance_count)
                self.audit.record("series_complete", study_uid=series.study_uid,
                                  series_uid=series.series_uid, job=job_id,
                                  instances=series.instance_count, generation=series.generation)
                if self.publisher is not None:
                    self._publish(job_id)
            if self.publisher is not None:
                for job_id in self.store.stale_queued(now - self.config.cluster.requeue_after_s, now):
                    self._publish(job_id)
                return
            # Queued jobs: new ones, resumed after a crash, or asked for by `ichnode rerun`.
            for job in self.store.jobs((JobState.QUEUED,)):
                if job.id not in self._submitted:
                    self._submitted.add(job.id)
                    self.scheduler.add_job(self._analyse, args=[job.id], executor="analysis",
                                           id=f"job-{job.id}", replace_existing=True)

    def _publish(self, job_id: int) -> None:
        from ichnode.cluster.broker import ANALYSE

        try:
            self.publisher.publish(ANALYSE, job_id)
        except Exception:  # noqa: BLE001 - the job stays QUEUED and is published again (stale_queued)
            log.exception("publish_failed", job=job_id)

    def _analyse(self, job_id: int) -> None:
        try:
            self.pipeline.run_job(job_id)
        except IllegalTransition as exc:
            # A late instance superseded this job while it ran; the newer job carries on.
            state = self.store.job(job_id).state
            if state is not JobState.SUPERSEDED:
                log.error("job_state_error", job=job_id, error=str(exc))
        except Exception:  # noqa: BLE001 - scheduler threads must never die silently
            log.exception("job_step_crashed", job=job_id)
        finally:
            self._submitted.discard(job_id)
