"""ichnode beside a real PACS: Orthanc (Debian package) auto-routes CT to `ichnode serve` with the Lua
script shipped in deploy/orthanc/, and receives the SEG, SR and secondary capture back, by C-STORE
or by DICOMweb STOW-RS."""
from __future__ import annotations

import io
import subprocess

import pydicom
import pytest

from ichnode.store.jobs import JobState, JobStore
from ichnode.store.outbox import Outbox
from ichnode.synth import SynthSpec, write_series

from tests.helpers import free_port, require_tool, start_ichnode, wait_until, write_config
from tests.orthanc_peer import ROUTING_LUA, Orthanc, dicomweb_plugin, orthanc_binary

SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture
def orthancs(tmp_path):
    if orthanc_binary() is None:
        pytest.skip("Orthanc is not installed (Debian package orthanc; scripts/setup --test installs it)")
    servers: list[Orthanc] = []

    def make(name: str, **kwargs) -> Orthanc:
        server = Orthanc(tmp_path / name, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def result_objects(orthanc: Orthanc, study_uid: str, source_series_uid: str):
    """{SOP class: [datasets]} of the study's new series once SEG, SR and SC are all in, else None."""
    series = [s for s in orthanc.study_series(study_uid)
              if s["MainDicomTags"].get("SeriesInstanceUID") != source_series_uid]
    by_class: dict[str, list] = {}
    for s in series:
        for instance_id in s["Instances"]:
            ds = pydicom.dcmread(io.BytesIO(orthanc.instance_file(instance_id)))
            by_class.setdefault(str(ds.SOPClassUID), []).append((instance_id, ds))
    return by_class if {SEG_CLASS, COMPREHENSIVE_3D_SR, SC_CLASS} <= set(by_class) else None


def check_results(orthanc: Orthanc, by_class: dict, truth: dict) -> None:
    source_series = truth["series_uid"]
    series = orthanc.study_series(truth["study_uid"])
    (seg_id, seg), = by_class[SEG_CLASS]
    (_, sr), = by_class[COMPREHENSIVE_3D_SR]
    scs = by_class[SC_CLASS]
    # Same study, each result kind in its own new series.
    result_series = {seg.SeriesInstanceUID, sr.SeriesInstanceUID, *(ds.SeriesInstanceUID for _, ds in scs)}
    assert len(result_series) == 3 and source_series not in result_series
    assert len(series) == 4, [s["MainDicomTags"] for s in series]
    # The SEG references the source series; the SR's evidence lists the source series and the SEG.
    assert [item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence] == [source_series]
    evidence = {ref.SeriesInstanceUID: {i.ReferencedSOPInstanceUID for i in ref.ReferencedSOPSequence}
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for ref in study.ReferencedSeriesSequence}
    assert source_series in evidence and len(evidence[source_series]) == truth["written_slices"]
    assert evidence.get(seg.SeriesInstanceUID) == {seg.SOPInstanceUID}
    # Orthanc can render the secondary capture key images.
    for instance_id, _ in scs:
        status, headers, body = orthanc.request("GET", f"/instances/{instance_id}/preview")
        assert status == 200 and body.startswith(b"\x89PNG\r\n\x1a\n"), (status, headers)


def jobs_in(db_path):
    store = JobStore(db_path)
    try:
        return store.jobs()
    finally:
        store.close()


def test_orthanc_routes_ct_to_ichnode_and_stores_results(tmp_path, processes, orthancs):
    storescu = require_tool("storescu")
    series = tmp_path / "series"
    truth = write_series(series, SynthSpec(subtype="sdh", volume_ml=20.0, matrix=256, seed=21))
    node_port = free_port()
    pacs = orthancs("pacs", modalities={"ichnode": ("ICHNODE", "127.0.0.1", node_port)},
                    lua_scripts=(ROUTING_LUA,))
    config = write_config(tmp_path / "ichnode.yaml", tmp_path / "var", node_port,
                          [{"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1",
                            "port": pacs.dicom_port}])
    pacs.start()
    node = start_ichnode(processes, config, node_port)

    files = sorted(str(p) for p in series.glob("CT*.dcm"))
    sent = subprocess.run([storescu, "-aet", "SCANNER", "-aec", pacs.aet, "127.0.0.1",
                           str(pacs.dicom_port), *files], capture_output=True, text=True)
    assert sent.returncode == 0, sent.stderr

    by_class = wait_until(lambda: result_objects(pacs, truth["study_uid"], truth["series_uid"]),
                          180, interval=0.5, what="SEG, SR and SC routed back into Orthanc")
    check_results(pacs, by_class, truth)

    # No loop: ichnode received only the CT series (results were not routed back), and Orthanc's
    # routing jobs forwarded exactly the CT slices, all successfully.
    db = tmp_path / "var" / "ichnode.sqlite"
    wait_until(lambda: all(j.state is JobState.DONE for j in jobs_in(db)), 30,
               what="the job to be marked done")
    assert [(j.state, j.outcome) for j in jobs_in(db)] == [(JobState.DONE, "analysed")]

    def finished_routing_jobs():
        found = [pacs.get(f"/jobs/{j}") for j in pacs.get("/jobs")]
        return found if found and all(j["State"] in ("Success", "Failure") for j in found) else None

    routing = wait_until(finished_routing_jobs, 60, interval=0.2, what="Orthanc's routing jobs")
    assert all(j["State"] == "Success" for j in routing), routing
    assert sum(j["Content"]["CountOperations"] for j in routing) == truth["written_slices"]
    assert "SYNTH0001" not in node.log() and "PHANTOM" not in node.log()


def test_node_sends_results_by_stow_rs(tmp_path, processes, orthancs):
    if dicomweb_plugin() is None:
        pytest.skip("the Orthanc DICOMweb plugin is not installed (Debian package orthanc-dicomweb)")
    storescu = require_tool("storescu")
    series = tmp_path / "series"
    truth = write_series(series, SynthSpec(subtype="iph", volume_ml=15.0, matrix=256, seed=22))
    node_port = free_port()
    archive = orthancs("archive", dicomweb=True)
    config = write_config(tmp_path / "ichnode.yaml", tmp_path / "var", node_port,
                          [{"name": "archive", "kind": "stow", "url": archive.dicomweb_url}])
    archive.start()
    start_ichnode(processes, config, node_port)

    files = sorted(str(p) for p in series.glob("CT*.dcm"))
    sent = subprocess.run([storescu, "-aet", "SCANNER", "-aec", "ICHNODE", "127.0.0.1",
                           str(node_port), *files], capture_output=True, text=True)
    assert sent.returncode == 0, sent.stderr
    # Only the results went to the archive: put the source series there too, so that the study
    # reads as a PACS would hold it.
    for path in files:
        archive.upload(path)

    by_class = wait_until(lambda: result_objects(archive, truth["study_uid"], truth["series_uid"]),
                          180, interval=0.5, what="SEG, SR and SC stored by STOW-RS")
    check_results(archive, by_class, truth)
    db = tmp_path / "var" / "ichnode.sqlite"
    wait_until(lambda: [j.state for j in jobs_in(db)] == [JobState.DONE], 30,
               what="the job to be marked done")
    job, = jobs_in(db)
    assert job.error is None and "send_s" in job.timings
    outbox = Outbox(db)
    try:
        assert {(d.state, d.attempts, d.channel) for d in outbox.deliveries(job.id)} == {("sent", 1, "stow")}
    finally:
        outbox.close()
