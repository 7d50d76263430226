"""Instance records commit without a flush; the flushed spool file is the proof of arrival. A record
lost to a power cut is rebuilt from the file when the node starts, before it accepts anything."""
from __future__ import annotations

import sqlite3

import pydicom

from ichnode.audit import read_audit
from ichnode.store.jobs import JobState
from ichnode.synth import SynthSpec, write_series

from tests.helpers import wait_until
from tests.reliability.peers import association, send_dataset, start_node


def test_lost_instance_records_are_rebuilt_from_the_spool(tmp_path):
    truth = write_series(tmp_path / "series", SynthSpec(subtype="none", matrix=64, seed=31))
    datasets = [pydicom.dcmread(tmp_path / "series" / f) for f in truth["files"]]
    hold = {"assembly.expected_count": 10_000, "assembly.quiet_seconds": 3600}
    node = start_node(tmp_path, **hold)
    try:
        with association(node.port) as assoc:
            assert all(send_dataset(assoc, ds) == 0 for ds in datasets)
    finally:
        node.stop()
    # The power cut: the last three records never reached the disk; their files did.
    lost = [str(ds.SOPInstanceUID) for ds in datasets[-3:]]
    with sqlite3.connect(tmp_path / "var" / "ichnode.sqlite") as db:
        db.executemany("DELETE FROM instances WHERE sop_uid=?", [(uid,) for uid in lost])
    (tmp_path / "var" / "spool" / "1.2.3" / "4.5.6").mkdir(parents=True)
    (tmp_path / "var" / "spool" / "1.2.3" / "4.5.6" / "7.8.dcm").write_bytes(b"not DICOM")

    node = start_node(tmp_path, **{"assembly.quiet_seconds": 0.5})
    try:
        assert all(node.store.instance_path(uid) for uid in lost)
        job = wait_until(lambda: next(iter(node.store.jobs((JobState.DONE, JobState.FAILED))), None),
                         120, what="the series' analysis")
        assert job.state is JobState.DONE and job.outcome == "analysed", job.reason
        assert node.store.series(job.series_key).instance_count == len(datasets)
    finally:
        node.stop()
    started = [r for r in read_audit(tmp_path / "var" / "audit.jsonl") if r["event"] == "node_started"]
    assert [r["instances_rerecorded"] for r in started] == [0, 3]
