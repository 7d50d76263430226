"""A cluster of `ichnode serve --role receiver|worker` processes on one PostgreSQL database and one
RabbitMQ broker, with DCMTK storescp as the PACS: used by tests/cluster and benchmarks/cluster.py."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import kombu
import pydicom

from ichnode.cluster.broker import QUEUES
from ichnode.store.jobs import JobState, JobStore
from tests.helpers import free_port, port_open, start_storescp, wait_until, write_config


def purge_queues(broker_url: str) -> None:
    with kombu.Connection(broker_url) as connection:
        for queue in QUEUES.values():
            bound = queue(connection.default_channel)
            bound.declare()
            bound.purge()


class Cluster:
    def __init__(self, tmp_path: Path, processes, database: str, broker: str, receivers: int = 2,
                 workers: int = 2, **config):
        """processes: a starter (tests/conftest.py `processes`); config: sections merged into the
        configuration, e.g. engine={"models": [...]}."""
        self.tmp, self.start, self.database = tmp_path, processes, database
        self.received = tmp_path / "pacs"
        dest_port = free_port()
        self.pacs = start_storescp(processes, self.received, dest_port)
        self.config = write_config(
            tmp_path / "cluster.yaml", tmp_path / "shared", 0,
            [{"name": "pacs", "ae_title": "DEST", "host": "127.0.0.1", "port": dest_port}],
            cluster={"database_url": database, "broker_url": broker},
            **{"assembly": {"quiet_seconds": 3.0, "sweep_interval_s": 0.3},
               "engine": {"models": ["classical"]},
               "sender": {"backoff_initial_s": 0.2, "backoff_max_s": 1.0}, **config})
        self.store = JobStore(database)
        self.receivers = [self.receiver(i) for i in range(receivers)]
        self.workers = [self.worker(i) for i in range(workers)]

    def receiver(self, i: int):
        port = free_port()
        proc = self.start([sys.executable, "-m", "ichnode.cli", "serve", "-c", str(self.config), "--role",
                           "receiver", "--port", str(port)], self.tmp / f"receiver-{i}-{port}.log")
        wait_until(lambda: port_open(port) or not proc.alive(), 90, what=f"receiver {i}")
        assert proc.alive(), proc.log()
        proc.port = port
        return proc

    def worker(self, i: int):
        proc = self.start([sys.executable, "-m", "ichnode.cli", "serve", "-c", str(self.config), "--role",
                           "worker"], self.tmp / f"worker-{i}.log")
        wait_until(lambda: "worker_started" in proc.log() or not proc.alive(), 90, what=f"worker {i}")
        assert proc.alive(), proc.log()
        return proc

    def jobs_of(self, series_uid: str):
        return [j for j in self.store.jobs() if j.series_key.endswith("/" + series_uid)]

    def done(self, series_uid: str):
        jobs = [j for j in self.jobs_of(series_uid) if j.state is not JobState.SUPERSEDED]
        return jobs if jobs and all(j.state is JobState.DONE for j in jobs) else None

    def delivered(self) -> Counter:
        """SOP Instance UID -> how many times the PACS received it."""
        return Counter(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                       for p in self.received.iterdir() if p.is_file())

    def close(self) -> None:
        self.store.close()
