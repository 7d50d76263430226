"""Destinations that are down: retries with backoff until they come up; FAILED after
sender.max_attempts with the reason in `ichnode status`; `ichnode rerun JOB` / `--failed` send again
through the running node's sweep. Real peers: DCMTK storescu in, DCMTK storescp out."""
from __future__ import annotations

import json
import subprocess
import sys

import pydicom
import yaml

from ichnode.audit import read_audit
from ichnode.store.jobs import JobState
from ichnode.synth import SynthSpec, write_series

from tests.helpers import free_port, start_storescp, wait_until
from tests.reliability.peers import start_node, storescu


def _dest(port):
    return {"name": "pacs", "ae_title": "DEST", "host": "127.0.0.1", "port": port}


def _send_series(tmp_path, node, seed, name):
    folder = tmp_path / name
    truth = write_series(folder, SynthSpec(subtype="iph", matrix=128, seed=seed))
    sent = storescu(sorted(folder.glob("CT*.dcm")), node.port)
    assert sent.returncode == 0, sent.stdout[-1500:]
    return truth


def _job_for(node, truth):
    for job in node.store.jobs():
        if node.store.series(job.series_key).series_uid == truth["series_uid"]:
            return job
    return None


def _cli(tmp_path, data_dir, *args):
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data_dir), "destinations": []}))
    return subprocess.run([sys.executable, "-m", "ichnode.cli", *args, "-c", str(config)],
                          capture_output=True, text=True, timeout=120)


def test_destination_down_first_then_up_receives_results(tmp_path, processes):
    dest_port = free_port()  # nothing listens there yet
    node = start_node(tmp_path, [_dest(dest_port)], **{
        "sender.backoff_initial_s": 0.2, "sender.backoff_max_s": 0.8, "sender.max_attempts": 100})
    try:
        truth = _send_series(tmp_path, node, 61, "s1")
        owed = wait_until(lambda: (j := _job_for(node, truth)) and
                          [d for d in node.outbox.deliveries(j.id) if d.attempts >= 2], 60,
                          what="two failed send attempts")
        assert _job_for(node, truth).state is JobState.SENDING
        assert all(d.state == "pending" and "pacs" in d.error for d in owed)
        received = tmp_path / "received"
        start_storescp(processes, received, dest_port)
        done = wait_until(lambda: (j := _job_for(node, truth)) and j.state is JobState.DONE and j,
                          60, what="the job to be delivered once the destination is up")
        deliveries = node.outbox.deliveries(done.id)
    finally:
        node.stop()
    assert done.error is None and len(deliveries) == len(done.results)
    assert all(d.state == "sent" and d.attempts >= 3 for d in deliveries)
    got = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in received.iterdir()}
    expected = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in done.results}
    assert got == expected and len(got) >= 2  # SEG, SR and key slices, nothing else
    events = [r["event"] for r in read_audit(tmp_path / "var" / "audit.jsonl")]
    assert events.count("send_failed") >= 2 and events.count("sent") == 1


def test_failed_after_max_attempts_shown_in_status_then_rerun(tmp_path, processes):
    dest_port = free_port()
    node = start_node(tmp_path, [_dest(dest_port)], **{
        "sender.backoff_initial_s": 0.1, "sender.backoff_max_s": 0.2, "sender.max_attempts": 3})
    data_dir = node.config.data_dir
    try:
        truths = [_send_series(tmp_path, node, 62, "a"), _send_series(tmp_path, node, 63, "b")]
        failed = wait_until(lambda: all((j := _job_for(node, t)) and j.state is JobState.FAILED
                                        for t in truths) and [_job_for(node, t) for t in truths],
                            90, what="both jobs to fail")
        assert {(d.state, d.attempts) for j in failed for d in node.outbox.deliveries(j.id)} == {("failed", 3)}

        status = _cli(tmp_path, data_dir, "status", "--json")
        assert status.returncode == 0, status.stderr
        rows = {row.get("job"): row for row in json.loads(status.stdout)}
        for job in failed:
            assert rows[job.id]["state"] == "failed"
            assert "sending failed after 3 attempts" in rows[job.id]["reason"]
            assert "pacs" in rows[job.id]["reason"]
        table = _cli(tmp_path, data_dir, "status")
        assert "failed" in table.stdout and "sending failed after 3" in table.stdout.replace("\n", " ")

        received = tmp_path / "received"
        start_storescp(processes, received, dest_port)
        one = _cli(tmp_path, data_dir, "rerun", str(failed[0].id))
        assert one.returncode == 0 and "queued again" in one.stdout, one.stdout + one.stderr
        wait_until(lambda: node.store.job(failed[0].id).state is JobState.DONE, 60,
                   what="the rerun job to be delivered")
        assert node.store.job(failed[1].id).state is JobState.FAILED  # only the one asked for
        rest = _cli(tmp_path, data_dir, "rerun", "--failed")
        assert rest.returncode == 0 and f"job {failed[1].id} queued again" in rest.stdout
        wait_until(lambda: node.store.job(failed[1].id).state is JobState.DONE, 60,
                   what="the --failed job to be delivered")
        jobs = [node.store.job(j.id) for j in failed]
    finally:
        node.stop()
    got = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in received.iterdir()}
    expected = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                for j in jobs for p in j.results}
    assert got == expected
    assert _cli(tmp_path, data_dir, "rerun", "--failed").stdout.strip() == "no failed jobs"
