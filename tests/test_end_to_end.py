"""The acceptance path with real peers: DCMTK storescu -> `ichnode serve` -> DCMTK storescp."""
import subprocess

import pydicom
import pytest

from ichnode.results.read import sr_value
from ichnode.store.jobs import JobState, JobStore
from ichnode.synth import SynthSpec, write_series

from tests.helpers import (dciodvfy_errors, free_port, require_tool, start_ichnode, start_storescp,
                      wait_until, write_config)


def finished_jobs(db_path, count):
    if not db_path.exists():
        return None
    store = JobStore(db_path)
    try:
        jobs = store.jobs()
    finally:
        store.close()
    done = [j for j in jobs if j.state in (JobState.DONE, JobState.FAILED)]
    return done if len(done) >= count else None


def test_storescu_to_node_to_storescp(tmp_path, processes):
    storescu = require_tool("storescu")
    series = tmp_path / "series"
    truth = write_series(series, SynthSpec(subtype="iph", volume_ml=20.0, matrix=256, seed=11))
    received = tmp_path / "received"
    dest_port, node_port = free_port(), free_port()
    start_storescp(processes, received, dest_port)
    config = write_config(tmp_path / "ichnode.yaml", tmp_path / "var", node_port,
                          [{"name": "dest", "ae_title": "DEST", "host": "127.0.0.1", "port": dest_port}])
    node = start_ichnode(processes, config, node_port)

    files = sorted(str(p) for p in series.glob("*.dcm"))
    sent = subprocess.run([storescu, "-aet", "SCANNER", "-aec", "ICHNODE", "127.0.0.1",
                           str(node_port), *files], capture_output=True, text=True)
    assert sent.returncode == 0, sent.stderr

    jobs = wait_until(lambda: finished_jobs(tmp_path / "var" / "ichnode.sqlite", 1), 180,
                      what="the job to finish")
    assert [j.state for j in jobs] == [JobState.DONE], jobs[0].error
    objects = [pydicom.dcmread(p) for p in sorted(received.iterdir())]
    modalities = sorted(ds.Modality for ds in objects)
    assert modalities.count("SEG") == 1 and modalities.count("SR") == 1
    assert modalities.count("OT") >= 1  # secondary capture key slices
    for path in received.iterdir():
        assert dciodvfy_errors(path) == [], path.name

    source_uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    seg = next(ds for ds in objects if ds.Modality == "SEG")
    referenced = {item.ReferencedSOPInstanceUID
                  for series_item in seg.ReferencedSeriesSequence
                  for item in series_item.ReferencedInstanceSequence}
    assert referenced and referenced <= source_uids
    sr = next(ds for ds in objects if ds.Modality == "SR")
    assert all(ds.StudyInstanceUID == truth["study_uid"] for ds in objects)
    volume = sr_value(sr, "All hemorrhage", "Volume", "segmentation")
    assert volume == pytest.approx(truth["volume_ml"], rel=0.15)
    assert sr_value(sr, "Largest lesion", "Volume", "ABC/2") > 0

    # No patient name or ID from the input reaches the node's log.
    log = node.log()
    assert "node_started" in log
    assert truth.get("patient_name", "SYNTH^PHANTOM").split("^")[0] not in log
    assert truth.get("patient_id", "SYNTH0001") not in log
