"""Nothing acknowledged is lost, and nothing is analysed or sent twice, whatever a peer or the
analysis does (issue 13; docs/security.md): against a running node (in process, so a fault can
be injected where the test says so)."""
from __future__ import annotations

import errno

import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, RLELossless, generate_uid
from pynetdicom import AE

from ichnode.audit import read_audit
from ichnode.dicom.status import StoreStatus
from ichnode.node import Node
from ichnode.store.jobs import MAX_ANALYSIS_STARTS, JobState, JobStore
from ichnode.synth import SynthSpec, write_series

from tests.helpers import wait_until
from tests.reliability.peers import acknowledged, association, echo_ok, start_node, storescu


def series_files(folder, seed: int, slices: int | None = None):
    spec = SynthSpec(subtype="none", matrix=64, seed=seed)
    truth = write_series(folder, spec)
    return [folder / f for f in truth["files"]][:slices]


def finished(node, count: int):
    jobs = node.store.jobs((JobState.DONE, JobState.FAILED))
    return jobs if len(jobs) >= count else None


def test_same_sop_instance_uid_in_another_series_is_refused_and_the_first_keeps_it(tmp_path):
    node = start_node(tmp_path, **{"assembly.quiet_seconds": 1.0})
    files = series_files(tmp_path / "a", seed=1)
    try:
        sent = storescu(files, node.port)
        assert len(acknowledged(sent.stdout + sent.stderr)) == len(files)
        (first,) = wait_until(lambda: finished(node, 1), 60, what="the first analysis")
        thief = pydicom.dcmread(files[0])
        thief.SeriesInstanceUID = generate_uid()  # the same instance, claimed by a second series
        with association(node.port) as assoc:
            answer = assoc.send_c_store(thief)
        assert answer.Status == StoreStatus.DUPLICATE_SOP_INSTANCE
        assert "another series" in answer.ErrorComment
        sop = str(thief.SOPInstanceUID)
        path = node.store.instance_path(sop)
        assert str(thief.StudyInstanceUID) in path and str(pydicom.dcmread(files[0]).SeriesInstanceUID) in path
        assert node.store.series(first.series_key).open is False  # not reopened, not re-analysed
    finally:
        node.stop()
    restarted = Node(node.config).start()  # the record stays where it is at every restart
    try:
        assert restarted.store.instance_path(sop) == path
        assert len(restarted.store.instance_paths(first.series_key)) == len(files)
    finally:
        restarted.stop()
    refused = [r for r in read_audit(node.config.data_dir / "audit.jsonl") if r["event"] == "instance_refused"]
    assert refused and refused[-1]["status"] == "0x0111"


def test_a_resent_analysed_series_is_acknowledged_and_not_analysed_again(tmp_path):
    """PACS retries resend whole series: the same bytes again start no analysis and no sending."""
    node = start_node(tmp_path, **{"assembly.quiet_seconds": 1.0})
    files = series_files(tmp_path / "a", seed=2)
    try:
        storescu(files, node.port)
        (job,) = wait_until(lambda: finished(node, 1), 60, what="the analysis")
        again = storescu(files, node.port)
        assert len(acknowledged(again.stdout + again.stderr)) == len(files)
        series = node.store.series(job.series_key)
        assert (series.open, series.generation) == (False, job.generation)
        assert [j.id for j in node.store.jobs()] == [job.id]
    finally:
        node.stop()
    closed = [r for r in read_audit(node.config.data_dir / "audit.jsonl") if r["event"] == "association_closed"]
    assert closed[-1]["duplicates"] == len(files)


def test_an_association_slot_comes_back_when_the_audit_write_fails(tmp_path):
    """Disk full while the 'accepted' audit line is written: the association ends, its slot
    does not leak (else max_associations such failures would lock every sender out)."""
    node = start_node(tmp_path, **{"node.max_associations": 2})
    audit = node.store_handler.audit
    real_record = audit.record

    def full_disk(event, **fields):
        if event == "association_accepted":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_record(event, **fields)

    try:
        audit.record = full_disk
        for _ in range(5):
            echo_ok(node.port)
        audit.record = real_record
        assert echo_ok(node.port)
    finally:
        node.stop()


def test_a_small_instance_declaring_a_huge_image_is_not_analysed(tmp_path):
    """RLE instances of a few bytes that declare 60000 x 60000 pixels: refused by eligibility
    before any pixel buffer is allocated, with the reason; the node goes on serving."""
    node = start_node(tmp_path, **{"assembly.quiet_seconds": 1.0})
    study, series = generate_uid(), generate_uid()
    try:
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(CTImageStorage, RLELossless)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="ICHNODE")
        try:
            for path in series_files(tmp_path / "s", seed=3, slices=10):
                ds = pydicom.dcmread(path)
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
                ds.Rows = ds.Columns = 60000
                ds.PixelData = encapsulate([b"\x00" * 64])
                ds.file_meta.TransferSyntaxUID = RLELossless
                assert assoc.send_c_store(ds).Status == 0
        finally:
            assoc.release()
        (job,) = wait_until(lambda: finished(node, 1), 60, what="the verdict")
        assert job.outcome == "not analysed"  # answered with a "not analysed" SR
        assert "eligibility.max_matrix" in job.reason
        assert echo_ok(node.port)
    finally:
        node.stop()


def test_a_job_that_took_the_node_down_twice_is_parked(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    store.record_instance(study_uid="1.2", series_uid="1.2.3", sop_uid="1.2.3.4", path="/x", size=1,
                          calling_aet="CT", modality="CT", description=None, expected_count=None)
    job_id = store.close_series("1.2/1.2.3")
    for start in range(1, MAX_ANALYSIS_STARTS + 1):
        store.transition(job_id, JobState.ANALYSING)  # ... and the process dies here
        recovered = store.recover()
        if start < MAX_ANALYSIS_STARTS:
            assert recovered == [job_id] and store.job(job_id).state is JobState.QUEUED
    job = store.job(job_id)
    assert recovered == [] and job.state is JobState.FAILED
    assert "stopped its analyser 2 times" in job.error
    store.requeue(job_id)  # an operator's rerun gets the full allowance again
    assert store.job(job_id).analysis_starts == 0
