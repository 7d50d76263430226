"""The audit trail: append-only JSON lines under data_dir with UIDs and digests, never patient data.

A series whose PatientName and PatientID are distinctive strings goes through `ichnode serve`
(stored, analysed, sent), along with a not-analysed series and a refused instance of the same
patient. The strings must be in the spooled DICOM (so the test could fail) and in no log, audit or
job-store file under data_dir, nor in the node's output.
"""
from __future__ import annotations

import pydicom
import pytest

from ichnode.audit import Audit, read_audit
from ichnode.dicom.status import StoreStatus
from ichnode.synth import SynthSpec, write_series

from tests.helpers import free_port, start_storescp, wait_until, write_config
from tests.reliability.peers import (all_done, association, dataset_bytes, db_rows, latest_jobs,
                                     send_raw, serve_args, storescu, wait_serving, write_with_meta)

NAME, PATIENT_ID = "QUOKKAFINCH^ZEBULON", "PID-XYZZY-31337"
TOKENS = ["QUOKKAFINCH", "ZEBULON", "XYZZY-31337"]


def test_no_patient_data_in_logs_audit_or_job_store(tmp_path, processes):
    spec = dict(matrix=64, patient_name=NAME, patient_id=PATIENT_ID)
    good = write_series(tmp_path / "good", SynthSpec(subtype="iph", seed=96, **spec))
    wrong = write_series(tmp_path / "mr", SynthSpec(subtype="none", seed=97, modality="MR", **spec))
    dest_port, port = free_port(), free_port()
    start_storescp(processes, tmp_path / "received", dest_port)
    data_dir = tmp_path / "var"
    config = write_config(tmp_path / "ichnode.yaml", data_dir, port,
                          [{"name": "pacs", "ae_title": "DEST", "host": "127.0.0.1", "port": dest_port}])
    node = processes(serve_args(config), tmp_path / "serve.log")
    wait_serving(node, port)
    for folder in ("good", "mr"):
        sent = storescu(sorted((tmp_path / folder).glob("CT*.dcm")), port)
        assert sent.returncode == 0, sent.stderr[-1500:]
    # A refused instance of the same patient (its SOP class does not match the context).
    meta, body = dataset_bytes(tmp_path / "good" / good["files"][0])
    ds = pydicom.dcmread(tmp_path / "good" / good["files"][0])
    ds.SOPClassUID = pydicom.uid.MRImageStorage
    ds.save_as(tmp_path / "refused.dcm", enforce_file_format=True)
    _, refused_body = dataset_bytes(tmp_path / "refused.dcm")
    with association(port) as assoc:
        status = send_raw(assoc, write_with_meta(tmp_path / "refused-raw.dcm", meta, refused_body))
    assert status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    db = data_dir / "ichnode.sqlite"
    wait_until(lambda: all_done(db, [good["series_uid"], wrong["series_uid"]]), 120,
               what="both jobs to finish")
    node.stop()
    assert len(latest_jobs(db)) == 2

    # The patient data is really in what was received...
    spooled = b"".join(p.read_bytes() for p in (data_dir / "spool").rglob("*.dcm"))
    assert all(t.encode() in spooled for t in TOKENS)
    # ...and nowhere in what the node logs or audits about it. (The job store's own tables are
    # checked too; the triage worklist table holds the patient's name for the radiologists' list
    # by design, like the spool and the result objects.)
    logs = [p for p in data_dir.rglob("*") if p.is_file() and p.suffix in (".log", ".jsonl", ".json")]
    assert (data_dir / "audit.jsonl") in logs
    for path in logs + [node.log_path]:
        text = path.read_bytes()
        for token in TOKENS:
            assert token.encode() not in text, f"{token} found in {path.name}"
    for table in ("series", "instances", "jobs", "sent", "purges"):
        rows = repr(db_rows(db, f"SELECT * FROM {table}"))
        assert not any(token in rows for token in TOKENS), f"patient data in job-store table {table}"

    audit = read_audit(data_dir / "audit.jsonl")
    events = [r["event"] for r in audit]
    for event in ("node_started", "association_accepted", "association_closed", "instance_refused",
                  "series_complete", "analysed", "sent", "node_stopped"):
        assert event in events, event
    closed = [r for r in audit if r["event"] == "association_closed"]
    assert sorted(r.get("stored", 0) for r in closed) == [0, 30, 30]
    analysed = {r["series_uid"]: r for r in audit if r["event"] == "analysed"}
    assert analysed[good["series_uid"]]["outcome"] == "analysed"
    assert analysed[wrong["series_uid"]]["outcome"] == "not analysed"
    assert "modality MR" in analysed[wrong["series_uid"]]["reason"]
    sent_uids = {u for r in audit if r["event"] == "sent" for u in r["sop_uids"]}
    received = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                for p in (tmp_path / "received").iterdir()}
    assert sent_uids == received
    # Append-only: the records are in time order and the file only grew.
    assert [r["ts"] for r in audit] == sorted(r["ts"] for r in audit)


def test_audit_refuses_fields_that_could_carry_patient_data(tmp_path):
    audit = Audit(tmp_path / "audit.jsonl")
    for key in ("patient_name", "PatientID", "patient_birth_date", "accession_number"):
        with pytest.raises(ValueError, match="patient data"):
            audit.record("stored", **{key: "X"})
    with pytest.raises(TypeError):
        audit.record("stored", dataset={"PatientName": "X"})
    audit.record("stored", series_uid="1.2.3", instances=3)
    audit.close()
    assert [r["event"] for r in read_audit(tmp_path / "audit.jsonl")] == ["stored"]
