"""Cluster mode against the single node: N series sent at once, throughput and time to result.

    .venv/bin/python benchmarks/cluster.py [--series 8] [--matrix 256] [--only single,cluster]

single   one `ichnode serve` (SQLite, analysis in process), the N series sent to it at once
cluster  PostgreSQL + RabbitMQ (Debian packages, started privately as in the tests), 2 receivers
         and 2 workers as separate processes; the N series spread over the receivers at once

Each series is a synthetic head CT (5 mm, matrix --matrix) sent by its own DCMTK storescu; the PACS
is DCMTK storescp. Reported: wall time from the first send to the last series DONE, throughput
(series per minute), and per series the time to result: last instance received -> every result
object acknowledged by the PACS (the job's `timings`). The engine is the classical one (CPU).
On a 2-core machine the four cluster processes share the cores the single node has to itself:
this measures the overhead and the behaviour of the topology, not the scaling a GPU pool gives.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine, series  # noqa: E402

from ichnode.loopback import LoggedProcess, free_port, port_open, wait_until  # noqa: E402
from ichnode.store.jobs import JobState, JobStore  # noqa: E402
from ichnode.synth import SynthSpec  # noqa: E402
from tests.cluster.topology import Cluster, purge_queues  # noqa: E402
from tests.helpers import start_storescp, write_config  # noqa: E402
from tests.reliability.peers import storescu  # noqa: E402
from tests.services import PostgreSQL, RabbitMQ  # noqa: E402


class Starter:
    """Starts logged processes and stops them all at the end (what the tests' fixture does)."""

    def __init__(self):
        self.started: list[LoggedProcess] = []

    def __call__(self, args, log_path, env=None) -> LoggedProcess:
        proc = LoggedProcess(args, log_path, env)
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.started:
            proc.stop()


# Every series comes from 127.0.0.1 here; a burst from one address would hit the per-address cap.
NODE = {"max_connections_per_address": 64}


def send_all(batches: list[tuple[list[Path], int]]) -> float:
    """Each (files, port) by its own storescu, all at once; returns when the first started."""
    started, failed = time.time(), []

    def send(files, port):
        if storescu(files, port).returncode != 0:
            failed.append(files[0].parent.name)

    threads = [threading.Thread(target=send, args=batch) for batch in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise SystemExit(f"storescu failed for {failed}")
    return started


def wait_done(store: JobStore, n: int) -> list:
    def done():
        jobs = [j for j in store.jobs() if j.state is not JobState.SUPERSEDED]
        return jobs if len(jobs) >= n and all(j.state in (JobState.DONE, JobState.FAILED) for j in jobs) else None

    return wait_until(done, 1800, interval=0.2, what=f"{n} series done")


def report(name: str, started: float, jobs: list) -> dict:
    finished = max(j.timings["sent_at"] for j in jobs)
    to_result = sorted(j.timings["sent_at"] - j.timings["last_received_at"] for j in jobs)
    wall = finished - started
    row = {"topology": name, "series": len(jobs), "failed": sum(j.state is JobState.FAILED for j in jobs),
           "wall_s": wall, "per_min": 60 * len(jobs) / wall, "median_s": statistics.median(to_result),
           "max_s": to_result[-1]}
    print(f"{name:8s} {row['series']} series ({row['failed']} failed) in {wall:.1f} s: "
          f"{row['per_min']:.1f} series/min; time to result median {row['median_s']:.1f} s, "
          f"max {row['max_s']:.1f} s", flush=True)
    return row


def run_single(work: Path, inputs: list[list[Path]]) -> dict:
    starter = Starter()
    try:
        dest = free_port()
        start_storescp(starter, work / "pacs", dest)
        port = free_port()
        config = write_config(work / "single.yaml", work / "data", port,
                              [{"name": "pacs", "ae_title": "DEST", "host": "127.0.0.1", "port": dest}],
                              assembly={"quiet_seconds": 3.0, "sweep_interval_s": 0.3},
                              engine={"models": ["classical"]}, node=NODE)
        node = starter([sys.executable, "-m", "ichnode.cli", "serve", "-c", str(config)], work / "single.log")
        wait_until(lambda: port_open(port) or not node.alive(), 90, what="the single node")
        started = send_all([(files, port) for files in inputs])
        store = JobStore(work / "data" / "ichnode.sqlite")
        try:
            return report("single", started, wait_done(store, len(inputs)))
        finally:
            store.close()
    finally:
        starter.stop()


def run_cluster(work: Path, inputs: list[list[Path]]) -> dict:
    starter, postgres, rabbit = Starter(), PostgreSQL(), RabbitMQ()
    try:
        purge_queues(rabbit.url)
        cluster = Cluster(work, starter, postgres.new_database(), rabbit.url, node=NODE)
        ports = [r.port for r in cluster.receivers]
        started = send_all([(files, ports[i % len(ports)]) for i, files in enumerate(inputs)])
        try:
            return report("cluster", started, wait_done(cluster.store, len(inputs)))
        finally:
            cluster.close()
    finally:
        starter.stop()
        rabbit.stop()
        postgres.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=8)
    ap.add_argument("--matrix", type=int, default=256)
    ap.add_argument("--only", default="single,cluster")
    args = ap.parse_args(argv)
    print(machine(), flush=True)
    inputs = [series(f"cluster-{args.matrix}-{i}", SynthSpec(subtype=("iph", "sdh", "none")[i % 3],
                                                              matrix=args.matrix, seed=500 + i))[0]
              for i in range(args.series)]
    for name in args.only.split(","):
        with tempfile.TemporaryDirectory(prefix=f"ichnode-bench-{name}-") as work:
            {"single": run_single, "cluster": run_cluster}[name](Path(work), inputs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
