"""`ichnode serve --role worker`: analyses and delivers the jobs RabbitMQ hands it, one at a time.

A message is acknowledged after its work is recorded in PostgreSQL. Killed before that, the
broker gives the message to another worker (`redelivered`): a job it finds ANALYSING is analysed
again (parked as failed after MAX_ANALYSIS_STARTS, as on a single node); a delivery sends only
what the outbox does not already hold as acknowledged. A message for a job that another worker
already took, finished or that was superseded is acknowledged and dropped.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import kombu

from ichnode.audit import Audit
from ichnode.cluster.broker import ANALYSE, DELIVER, DELIVER_WAIT, QUEUES, Publisher, connect
from ichnode.config import Config
from ichnode.errors import IllegalTransition
from ichnode.log import get_logger
from ichnode.node import build_processing
from ichnode.store.jobs import JobState, JobStore
from ichnode.store.outbox import Outbox

log = get_logger("ichnode.worker")
HEARTBEAT = Path("/tmp/ichnode-worker.alive")  # `ichnode probe worker` reads its age


class Worker:
    def __init__(self, config: Config, engine=None):
        self.config = config
        self.store = JobStore(config.database)
        self.outbox = Outbox(config.database)
        self.audit = Audit.for_data_dir(config.data_dir)
        self.processing = build_processing(config, self.store, self.outbox, self.audit,
                                           before_read=lambda: None, engine=engine)
        self.publisher = Publisher(config.cluster.broker_url)
        self._stop = threading.Event()

    def run(self) -> None:
        """Consume until stop(); one message at a time (prefetch 1)."""
        log.info("worker_started", models=[f"{i.name} {i.version}" for i in self.processing.engine.infos])
        with connect(self.config.cluster.broker_url) as connection:
            channel = connection.channel()
            consumer = kombu.Consumer(channel, [QUEUES[ANALYSE], QUEUES[DELIVER]], accept=["json"],
                                      callbacks=[self._on_message], prefetch_count=1)
            QUEUES[DELIVER_WAIT](channel).declare()
            with consumer:
                while not self._stop.is_set():
                    HEARTBEAT.touch()
                    try:
                        connection.drain_events(timeout=1)
                    except socket.timeout:
                        pass
        self.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.processing.dispatcher.stop()  # its thread pool (the worker sends from its own thread)
        self.publisher.close()
        self.processing.triage.close()
        self.outbox.close()
        self.store.close()
        self.audit.close()
        log.info("worker_stopped")

    def _on_message(self, body: dict, message) -> None:
        job_id, queue = int(body["job"]), message.delivery_info["routing_key"]
        redelivered = bool(message.delivery_info.get("redelivered"))
        try:
            if queue == ANALYSE:
                self.analyse(job_id, redelivered)
            else:
                self.deliver(job_id)
        except Exception:  # noqa: BLE001 - the database or broker failed us: let another try
            log.exception("job_message_failed", job=job_id, queue=queue)
            time.sleep(1)
            message.requeue()
            return
        message.ack()

    def analyse(self, job_id: int, redelivered: bool) -> None:
        job = self.store.job(job_id)
        if job is None or job.state not in (JobState.QUEUED, JobState.ANALYSING):
            return  # finished, failed or superseded: a duplicate message
        if job.state is JobState.ANALYSING:
            if not redelivered:
                return  # another worker is on it
            if self.store.restart_analysis(job_id) is not JobState.QUEUED:
                return  # parked: it took a worker down MAX_ANALYSIS_STARTS times
            log.warning("analysis_restarted", job=job_id)
        log.info("analysis_taken", job=job_id)
        try:
            self.processing.pipeline.run_job(job_id)
        except IllegalTransition:
            return  # another worker took it, or a late instance superseded it
        if self.outbox.next_due_at(job_id) is not None:
            self.publisher.publish(DELIVER, job_id)

    def deliver(self, job_id: int) -> None:
        """Send what is due for the job now (notifications queued by its settlement too), then
        publish the next try for what remains, held back for its backoff."""
        while self.processing.dispatcher.run_due(job_id=job_id):
            pass
        due = self.outbox.next_due_at(job_id)
        if due is not None:
            self.publisher.publish(DELIVER_WAIT, job_id, delay_s=due - time.time())


def probe(max_age_s: float = 900.0) -> bool:
    """Liveness: the consumer loop touched its heartbeat lately (between messages every second;
    one analysis may hold it for minutes)."""
    try:
        return time.time() - HEARTBEAT.stat().st_mtime < max_age_s
    except FileNotFoundError:
        return False
