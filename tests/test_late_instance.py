"""A late instance after completion re-opens the series; the new analysis supersedes the old one."""
import pydicom

from ichnode.config import DimseDestination, load_config
from ichnode.dicom.sender import describe, send
from ichnode.node import Node
from ichnode.store.jobs import JobState
from ichnode.synth import SynthSpec, write_series
from tests.helpers import wait_until


def test_late_instance_triggers_a_superseding_analysis(tmp_path):
    write_series(tmp_path / "series", SynthSpec(subtype="iph", matrix=128, seed=31))
    files = sorted((tmp_path / "series").glob("*.dcm"))
    early, late = files[:-1], files[-1:]
    config = load_config(None, overrides={
        "data_dir": str(tmp_path / "var"), "node.port": 0, "node.host": "127.0.0.1",
        "destinations": [], "assembly.quiet_seconds": 1.0, "assembly.expected_count": 10_000,
        "spool.prepared_slots": 0})  # small test images never use the slots
    node = Node(config).start()
    target = DimseDestination("node", "ICHNODE", "127.0.0.1", node.port)
    try:
        send([describe(p) for p in early], target, calling_aet="TEST", timeout_s=30,
             on_sent=lambda uid: None)
        (first,) = wait_until(lambda: node.store.jobs((JobState.DONE,)), 60, what="first analysis")
        send([describe(p) for p in late], target, calling_aet="TEST", timeout_s=30,
             on_sent=lambda uid: None)
        done = wait_until(lambda: [j for j in node.store.jobs((JobState.DONE,)) if j.id != first.id],
                          60, what="re-analysis")
        (second,) = done
        assert node.store.series(second.series_key).instance_count == len(files)
    finally:
        node.stop()
    assert second.generation == first.generation + 1
    uids = lambda job: {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                        for p in job.results}
    # New content, new UIDs: the superseding SR does not silently overwrite the first one.
    assert uids(first).isdisjoint(uids(second))
    seg = next(pydicom.dcmread(p) for p in second.results if "/SEG_" in p)
    referenced = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
                  for i in s.ReferencedInstanceSequence}
    assert len(referenced) == len(files)
