"""Disk pressure and retention.

Watermarks: above node.min_free_disk_mb / node.max_disk_use_percent the node answers C-STORE with
0xA700 and writes nothing; below them it serves again by itself. The thresholds are set relative to
the real state of the test's file system, so the real check trips.
Retention: series whose job is DONE longer than retention.purge_after_hours lose their spooled
instances (the scheduler job does it and records it); failed and still-receiving series keep them.
"""
from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest

from ichnode.audit import read_audit
from ichnode.config import load_config
from ichnode.dicom.status import StoreStatus
from ichnode.errors import ConfigError
from ichnode.store.disk import DiskGuard, disk_state
from ichnode.store.jobs import JobState
from ichnode.synth import SynthSpec, write_series

from tests.helpers import free_port, start_storescp, wait_until
from tests.reliability.peers import association, files_under, send_dataset, start_node, storescu


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("disk") / "series"
    truth = write_series(folder, SynthSpec(subtype="iph", matrix=128, seed=71))
    return folder, truth


def test_watermarks_refuse_with_a700_then_resume(tmp_path, series):
    folder, _ = series
    state = disk_state(tmp_path)
    # Configured so that the real free space is below the watermark.
    node = start_node(tmp_path, **{"node.min_free_disk_mb": state.free_mb + 100_000})
    try:
        slices = [pydicom.dcmread(p) for p in sorted(folder.glob("CT*.dcm"))[:4]]
        with association(node.port) as assoc:
            assert [send_dataset(assoc, ds) for ds in slices[:2]] == [StoreStatus.OUT_OF_RESOURCES] * 2
        assert files_under(node.config.spool_dir) == []
        assert node.store.all_series() == []

        # Usage watermark: just under what the disk already uses.
        used = disk_state(tmp_path).used_percent
        node.store_handler.disk_guard = DiskGuard(node.config.spool_dir, 0, max(used - 0.5, 0.01))
        with association(node.port) as assoc:
            assert send_dataset(assoc, slices[2]) == StoreStatus.OUT_OF_RESOURCES
        assert files_under(node.config.spool_dir) == []

        # Space is back: the same instances are accepted, nothing latched.
        node.store_handler.disk_guard = DiskGuard(node.config.spool_dir, 0, 100)
        with association(node.port) as assoc:
            assert [send_dataset(assoc, ds) for ds in slices] == [StoreStatus.SUCCESS] * 4
        assert node.store.all_series()[0].instance_count == 4
        assert len(files_under(node.config.spool_dir, "*.dcm")) == 4
    finally:
        node.stop()
    audit = read_audit(node.config.data_dir / "audit.jsonl")
    pressure = [r["refusing"] for r in audit if r["event"] == "disk_pressure"]
    assert pressure == [True, False]
    refused = [r for r in audit if r["event"] == "instance_refused"]
    assert len(refused) == 3 and all(r["status"] == "0xA700" for r in refused)
    assert "disk above watermark" in refused[0]["reason"]


def test_space_held_in_prepared_slots_counts_as_free_for_what_goes_into_it(tmp_path):
    free_mb = disk_state(tmp_path).free_mb
    guard = DiskGuard(tmp_path, free_mb + 50, 100)
    assert "disk above watermark" in guard.refusal(1000)
    assert guard.refusal(1000, held_bytes=100 * 1024 * 1024) is None
    assert "disk above watermark" in guard.refusal(1000, held_bytes=10 * 1024 * 1024)


def test_storescu_sees_out_of_resources(tmp_path, series):
    folder, _ = series
    node = start_node(tmp_path, **{"node.max_disk_use_percent": 0.001})
    try:
        sent = storescu(sorted(folder.glob("CT*.dcm"))[:1], node.port)
    finally:
        node.stop()
    assert "OutOfResources" in sent.stdout + sent.stderr or "a700" in (sent.stdout + sent.stderr).lower()
    assert files_under(node.config.spool_dir) == []


@pytest.mark.parametrize("key, value", [("node.min_free_disk_mb", -1),
                                        ("node.max_disk_use_percent", 0),
                                        ("node.max_disk_use_percent", 101),
                                        ("retention.purge_after_hours", 0)])
def test_watermark_and_retention_config_is_validated(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, overrides={key: value})


def test_retention_purges_done_series_only(tmp_path, processes, series):
    folder, truth = series
    dest_port = free_port()  # down: the first job fails
    hours = 1.5 / 3600  # 1.5 s
    node = start_node(tmp_path, [{"name": "pacs", "ae_title": "DEST", "host": "127.0.0.1",
                                  "port": dest_port}],
                      **{"sender.max_attempts": 1, "retention.purge_after_hours": hours,
                         "retention.interval_s": 0.3})
    try:
        assert storescu(sorted(folder.glob("CT*.dcm")), node.port).returncode == 0
        other = write_series(tmp_path / "open", SynthSpec(subtype="none", matrix=128, seed=72))
        assert storescu(sorted((tmp_path / "open").glob("CT*.dcm"))[:3], node.port).returncode == 0
        job = wait_until(lambda: [j for j in node.store.jobs() if j.state is JobState.FAILED], 60,
                         what="the job to fail (destination down)")[0]
        spooled = files_under(node.config.spool_dir, "*.dcm")
        assert len(spooled) == 33
        # Long past the limit: a FAILED job keeps its instances, an open series too.
        assert node.purge(now=time.time() + 1000 * 3600) == []
        assert len(files_under(node.config.spool_dir, "*.dcm")) == 33

        start_storescp(processes, tmp_path / "received", dest_port)
        node.store.requeue(job.id)
        wait_until(lambda: node.store.job(job.id).state is JobState.DONE, 60, what="the rerun")
        # The scheduler's purge runs by itself once the job has been DONE for 1.5 s.
        # The purge records itself, then clears the worklist's patient fields: wait for both.
        wait_until(lambda: node.store.purges() and len(files_under(node.config.spool_dir, "*.dcm")) == 3
                   and (node.triage.worklist.get(job.id) or {}).get("patient_name") is None,
                   30, what="the retention purge")
        purge = node.store.purges()[0]
        assert purge["series_uid"] == truth["series_uid"] and purge["files"] == 30
        left = files_under(node.config.spool_dir, "*.dcm")
        assert len(left) == 3 and all(other["series_uid"] in str(p) for p in left)
        assert node.store.instance_paths(job.series_key) == []
        assert node.store.job(job.id).state is JobState.DONE  # the job and its results stay
        assert all(Path(p).exists() for p in node.store.job(job.id).results)
        # The worklist keeps the row but no longer the patient's name and ID.
        row = node.triage.worklist.get(job.id)
        assert row is not None and row["patient_name"] is None and row["patient_id"] is None

        # Asking for the purged job again says why it cannot be analysed.
        node.store.requeue(job.id)
        rerun = wait_until(lambda: (j := node.store.job(job.id)).state is JobState.FAILED and j, 60,
                           what="the rerun of a purged series")
        assert "deleted" in rerun.reason and "retention" in rerun.reason
    finally:
        node.stop()
    purged = [r for r in read_audit(node.config.data_dir / "audit.jsonl") if r["event"] == "series_purged"]
    assert [r["series_uid"] for r in purged] == [truth["series_uid"]] and purged[0]["files"] == 30
