"""Series the node must refuse to analyse: each gets a clear reason in the SR and in `status`."""
import json
import subprocess
import sys

import pydicom
import pytest

from ichnode.config import DimseDestination, load_config
from ichnode.dicom.sender import describe, send
from ichnode.node import Node
from ichnode.results.read import sr_texts
from ichnode.store.jobs import JobState
from ichnode.synth import SynthSpec, write_series

from tests.helpers import wait_until

CASES = {
    "gap": (SynthSpec(subtype="iph", matrix=128, seed=21, drop_slices=(12,)), "missing slice"),
    "mr": (SynthSpec(subtype="none", matrix=128, seed=22, modality="MR"), "modality MR"),
    "coronal": (SynthSpec(subtype="none", matrix=128, seed=23, orientation="coronal"), "not an axial"),
    "contrast": (SynthSpec(subtype="none", matrix=128, seed=24, contrast=True), "contrast"),
}


@pytest.fixture(scope="module")
def node_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("not-analysed")
    config = load_config(None, overrides={
        "data_dir": str(tmp / "var"), "node.port": 0, "node.host": "127.0.0.1",
        "destinations": [], "assembly.quiet_seconds": 1.0,
        "spool.prepared_slots": 0})  # small test images never use the slots
    node = Node(config).start()
    try:
        for name, (spec, _) in CASES.items():
            folder = tmp / name
            write_series(folder, spec)
            send([describe(p) for p in sorted(folder.glob("*.dcm"))],
                 DimseDestination("node", "ICHNODE", "127.0.0.1", node.port), calling_aet="TEST",
                 timeout_s=30, on_sent=lambda uid: None)
        wait_until(lambda: len(node.store.jobs((JobState.DONE, JobState.FAILED))) == len(CASES),
                   120, what="all jobs to finish")
        jobs = {node.store.series(j.series_key).study_uid: j for j in node.store.jobs()}
    finally:
        node.stop()
    return tmp, config, jobs


@pytest.mark.parametrize("case", list(CASES))
def test_reason_in_sr(node_run, case):
    tmp, _, jobs = node_run
    study_uid = json.loads((tmp / case / "truth.json").read_text())["study_uid"]
    job = jobs[study_uid]
    expected = CASES[case][1]
    assert job.state is JobState.DONE and job.outcome == "not analysed"
    assert expected in job.reason
    srs = [pydicom.dcmread(p) for p in job.results]
    assert [ds.Modality for ds in srs] == ["SR"]  # no SEG or SC for what was not analysed
    texts = " | ".join(sr_texts(srs[0]))
    assert "Not analysed" in texts and expected in texts


def test_reasons_in_status_command(node_run, tmp_path):
    tmp, config, _ = node_run
    config_file = tmp_path / "c.yaml"
    config_file.write_text(f"data_dir: {config.data_dir}\ndestinations: []\n")
    out = subprocess.run([sys.executable, "-m", "ichnode.cli", "status", "-c", str(config_file),
                          "--json"], capture_output=True, text=True, check=True).stdout
    reasons = [row["reason"] for row in json.loads(out)]
    for _, expected in CASES.values():
        assert any(expected in (r or "") for r in reasons), (expected, reasons)
