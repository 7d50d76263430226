"""Cluster mode with its real parts: PostgreSQL and RabbitMQ from the Debian packages
(tests/services.py), two receivers and two workers as separate `ichnode serve --role ...`
processes on one shared spool, DCMTK storescu in and DCMTK storescp (unique file names, so a
duplicate delivery would show as a second file) as the PACS.

One series split over both receivers is analysed once; a worker killed with SIGKILL mid-analysis
and a receiver killed mid-series lose no acknowledged instance, and every result object reaches
the PACS exactly once."""
from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pydicom
import pytest

from ichnode.store.jobs import JobState
from ichnode.synth import SynthSpec, write_series
from tests.cluster.topology import Cluster, purge_queues
from tests.helpers import require_tool, wait_until
from tests.reliability.peers import acknowledged, kill9, storescu


@pytest.fixture
def cluster(tmp_path, processes, postgresql_server, rabbitmq_server):
    require_tool("storescp")
    purge_queues(rabbitmq_server.url)  # the broker outlives one test
    c = Cluster(tmp_path, processes, postgresql_server.new_database(), rabbitmq_server.url)
    yield c
    c.close()


def _series(tmp_path: Path, name: str, seed: int, matrix: int = 128) -> tuple[list[Path], dict]:
    truth = write_series(tmp_path / name, SynthSpec(subtype="iph", matrix=matrix, seed=seed))
    return sorted((tmp_path / name).glob("CT*.dcm")), truth


def _instances(cluster: Cluster, series_uid: str) -> set[str]:
    """SOP Instance UIDs of the series' instances on record, read from their spooled files."""
    key = cluster.jobs_of(series_uid)[-1].series_key
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for p in cluster.store.instance_paths(key)}


def test_split_series_worker_and_receiver_killed_nothing_lost_nothing_twice(cluster, tmp_path):
    # 1. One series, its two halves sent at once to the two receivers: analysed once.
    files, truth = _series(tmp_path, "split", 81)
    halves = [files[0::2], files[1::2]]
    results = [None, None]

    def send(i):
        results[i] = storescu(halves[i], cluster.receivers[i].port)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stdout[-800:] for r in results]
    done = wait_until(lambda: cluster.done(truth["series_uid"]), 180, what="the split series' results")
    assert len(cluster.jobs_of(truth["series_uid"])) == 1 and len(done) == 1
    assert _instances(cluster, truth["series_uid"]) == {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}

    # 2. The worker analysing a series is killed: the other worker analyses it again and sends.
    files, truth = _series(tmp_path, "worker-killed", 82, matrix=512)
    assert storescu(files, cluster.receivers[0].port).returncode == 0
    job = wait_until(lambda: [j for j in cluster.jobs_of(truth["series_uid"])
                              if j.state is JobState.ANALYSING], 180, what="the analysis to start")[0]
    holder = wait_until(lambda: [w for w in cluster.workers if f'"job": {job.id}' in w.log()
                                 and "analysis_taken" in w.log()], 30, what="the worker holding the job")[0]
    kill9(holder)
    if cluster.store.job(job.id).state is not JobState.ANALYSING:
        pytest.fail("the analysis ended before the kill: the series is too small for this machine")
    cluster.workers.remove(holder)
    wait_until(lambda: cluster.done(truth["series_uid"]), 240, what="the killed worker's job, redone")
    assert cluster.store.job(job.id).analysis_starts == 2

    # 3. A receiver is killed mid-series; the sender resends to the other (as a PACS retries).
    files, truth = _series(tmp_path, "receiver-killed", 83)
    victim, survivor = cluster.receivers
    sender = subprocess.Popen([require_tool("storescu"), "-v", "-aet", "SCANNER", "-aec", "ICHNODE", "-to", "20",
                               "127.0.0.1", str(victim.port), *map(str, files)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until(lambda: (jobs := cluster.store.all_series()) and any(
        s.series_uid == truth["series_uid"] and s.instance_count >= 5 for s in jobs), 60,
        what="some instances stored by the first receiver")
    kill9(victim)
    output, _ = sender.communicate(timeout=60)
    acked = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in acknowledged(output)}
    assert 5 <= len(acked) < len(files)
    assert storescu(files, survivor.port).returncode == 0
    wait_until(lambda: cluster.done(truth["series_uid"]), 240, what="the resent series' results")
    assert acked <= _instances(cluster, truth["series_uid"])  # nothing acknowledged was lost

    # Every result object of every job reached the PACS exactly once.
    delivered = cluster.delivered()
    owed = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for j in cluster.store.jobs() if j.state is JobState.DONE for p in j.results}
    assert set(delivered) >= owed and owed
    assert [uid for uid, n in delivered.items() if n > 1] == []
