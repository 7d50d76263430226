"""Crash safety with real peers: DCMTK storescu -> `ichnode serve` (kill -9'd) -> DCMTK storescp.

The node is killed with SIGKILL at seeded random moments, during C-STORE streams and during
analysis, and started again each time. After every kill (node dead) and at the end:
- every instance storescu got a success status for is on disk, byte-for-byte the dataset that was
  sent, and recorded in the job store;
- `.partial` leftovers (planted ones included) are removed at start and never become instances;
- instances are written through prepared spool slots (slots.py): one killed after its slot was
  flushed but before its rename or cut is finished at the next start;
- unfinished jobs resume (one whose analysis was killed twice is parked and rerun as an operator
  would) and every series ends with exactly one job, DONE;
- the destination holds exactly the result objects of that one job per series: re-sends after a
  crash carry the same deterministic UIDs, so nothing is duplicated (same-UID re-sends are
  counted and reported; a PACS replaces them).
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pydicom

from ichnode.store.slots import read_trailer
from ichnode.store.spool import Spool
from ichnode.synth import SynthSpec, write_series

from tests.helpers import free_port, port_open, require_tool, wait_until, write_config
from tests.reliability.peers import (acknowledged, all_done, db_rows, kill9, latest_jobs,
                                     serve_args, storescu, wait_serving)

SEED = 20261123
# (what is running when the node is killed, which series are being sent)
PLANTED_SOP = "1.2.3.999.1"
PLAN = [("store", [0]), ("store", [0, 1]), ("analysis", [0, 1]), ("store", [2]), ("analysis", [2])]


def _instances(db) -> dict[str, str]:
    return dict(db_rows(db, "SELECT sop_uid, path FROM instances"))


def _check_acknowledged(db, acked: set[str], source_by_path: dict) -> None:
    """With the node dead: every acknowledged instance is recorded and on disk, intact."""
    recorded = _instances(db)
    for name in acked:
        source = source_by_path[name]
        path = recorded.get(str(source.SOPInstanceUID))
        assert path is not None, f"acknowledged {name} is not in the job store"
        assert not path.endswith(".partial")
        stored = pydicom.dcmread(io.BytesIO(_instance_bytes(path, str(source.SOPInstanceUID))))
        assert stored.SOPInstanceUID == source.SOPInstanceUID
        assert stored.PixelData == source.PixelData, f"{name}: stored pixels differ from what was sent"


def _instance_bytes(path: str, sop_uid: str) -> bytes:
    """A spool file's instance: all of it, or, for a slot the kill left uncut, what its trailer
    declares (the next start cuts it there). A slot the kill caught between its flush (the
    acknowledgement) and its rename is still in the slot folder; the next start places it."""
    candidates = [Path(path)] if Path(path).exists() else sorted(
        (Path(path).parents[2] / ".slots").glob("*.slot"))
    for candidate in candidates:
        with open(candidate, "rb") as fh:
            length = read_trailer(fh.fileno(), os.fstat(fh.fileno()).st_size, verify=True)
            data = fh.read() if length is None else fh.read(length)
        if candidate == Path(path) or (length and sop_uid.encode() in data[:4096]):
            return data
    raise AssertionError(f"acknowledged instance {sop_uid} is neither at {path} nor in a filled slot")


def test_kill_9_during_store_and_analysis_loses_nothing(tmp_path, processes):
    storescu_exe = require_tool("storescu")
    rng = random.Random(SEED)
    files: dict[int, list] = {}
    truths = {}
    for i, subtype in enumerate(("iph", "sdh", "none")):
        folder = tmp_path / f"series{i}"
        truths[i] = write_series(folder, SynthSpec(subtype=subtype, matrix=256, seed=300 + i))
        files[i] = sorted(folder.glob("CT*.dcm"))
    source_by_path = {str(p): pydicom.dcmread(p) for paths in files.values() for p in paths}
    series_uids = [truths[i]["series_uid"] for i in files]

    received = tmp_path / "received"
    received.mkdir()
    dest_port, node_port = free_port(), free_port()
    processes([require_tool("storescp"), "+uf", "--aetitle", "DEST", "--output-directory",
               str(received), "--accept-all", str(dest_port)], tmp_path / "storescp.log")
    wait_until(lambda: port_open(dest_port), 20, what="storescp")
    data_dir = tmp_path / "var"
    db = data_dir / "ichnode.sqlite"
    config = write_config(
        tmp_path / "ichnode.yaml", data_dir, node_port,
        [{"name": "dest", "ae_title": "DEST", "host": "127.0.0.1", "port": dest_port}],
        assembly={"quiet_seconds": 600, "sweep_interval_s": 0.2},  # complete by count only
        spool={"prepared_slots": 48, "slot_kb": 192},  # 256 x 256 instances: 130 kB each
        sender={"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "max_attempts": 50},
        retention={"purge_after_hours": None})

    runs = []

    def start_node():
        proc = processes(serve_args(config), tmp_path / f"serve-{len(runs) + 1}.log")
        runs.append(proc)
        wait_serving(proc, node_port)
        wait_until(lambda: "spool_slots_ready" in proc.log(), 60, what="prepared spool slots")
        return proc

    acked: set[str] = set()
    kills = []
    planted = None
    for round_no, (kind, scope) in enumerate(PLAN, 1):
        if round_no == 2:
            planted = _plant_partials(data_dir, files[0][0])
        node = start_node()
        if planted:
            assert not any(p.exists() for p in planted), "partial leftovers survived a start"
        todo = [p for i in scope for p in files[i] if str(p) not in acked]
        if kind == "store":
            # Kill once the node has recorded a random number of this stream's instances.
            target = rng.randint(1, len(todo) - 2)
            baseline = len(_instances(db))
            scu = subprocess.Popen(
                [storescu_exe, "-v", "-aet", "SCANNER", "-aec", "ICHNODE", "-to", "20", "127.0.0.1",
                 str(node_port), *map(str, todo)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            wait_until(lambda: len(_instances(db)) >= baseline + target or scu.poll() is not None,
                       120, interval=0.01, what="the stream to reach the kill point")
            kill9(node)
            output = scu.communicate(timeout=60)[0]
            kills.append((kind, target, scu.returncode != 0))
        else:
            output = ""  # nothing to send when the last kill came after every instance's status
            if todo:
                sent = storescu(todo, node_port)
                output = sent.stdout + sent.stderr
                assert sent.returncode == 0, output[-2000:]
            unfinished = {series_uids[i] for i in scope}

            def analysing():
                states = [latest_jobs(db).get(uid, (0, ""))[1] for uid in unfinished]
                # (All done already can only happen when a previous kill came after the last
                # instance was stored; then this kill lands after analysis, which is fine too.)
                return "analysing" in states or all(s == "done" for s in states)

            wait_until(analysing, 120, interval=0.01, what="an analysis to start")
            # Fault injection at a random moment of the analysis (not a wait for readiness).
            delay = rng.uniform(0.0, 1.5)
            time.sleep(delay)
            kill9(node)
            kills.append((kind, round(delay, 2), True))
        acked |= acknowledged(output)
        _check_acknowledged(db, acked, source_by_path)

    # Restart, send what was never acknowledged, and let every job finish.
    node = start_node()
    remaining = [p for paths in files.values() for p in paths if str(p) not in acked]
    if remaining:
        sent = storescu(remaining, node_port)
        assert sent.returncode == 0, sent.stdout[-2000:]
        acked |= acknowledged(sent.stdout + sent.stderr)
    assert acked == set(source_by_path), "some instances were never acknowledged"
    # A job whose analysis was killed twice is parked (it could be what kills the node); the
    # operator's `ichnode rerun --failed` gives it back to the running node.
    parked = lambda: db_rows(db, "SELECT id FROM jobs WHERE state='failed' AND error LIKE "
                                 "'%stopped its analyser%'")
    if parked():
        rerun = subprocess.run([*serve_args(config)[:3], "rerun", "--failed", "-c", str(config)],
                               capture_output=True, text=True, timeout=60)
        assert rerun.returncode == 0, rerun.stderr
    wait_until(lambda: all_done(db, series_uids), 240, what="every series' job to be DONE")
    node.stop()
    assert node.proc.returncode == 0, node.log()[-2000:]

    _check_acknowledged(db, acked, source_by_path)
    assert not list(data_dir.rglob("*.partial")), "partial files left in the data folder"
    assert PLANTED_SOP not in _instances(db), "a .partial was taken for an instance"
    counts = dict(db_rows(db, "SELECT s.series_uid, COUNT(*) FROM series s JOIN instances i"
                              " ON i.series_key = s.key GROUP BY s.key"))
    assert counts == {uid: len(files[i]) for i, uid in enumerate(series_uids)}

    # One job per series (a re-sent identical instance does not reopen its series), DONE.
    jobs = db_rows(db, "SELECT s.series_uid, j.id, j.state, j.results FROM jobs j JOIN series s"
                       " ON s.key = j.series_key")
    assert Counter(uid for uid, *_ in jobs) == Counter(series_uids), jobs
    assert {state for _, _, state, _ in jobs} == {"done"}

    # The destination holds exactly each job's results, once per UID.
    expected_uids = {}
    for uid, _, _, results in jobs:
        for path in json.loads(results):
            expected_uids[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = uid
    received_files = [pydicom.dcmread(p, stop_before_pixels=True) for p in received.iterdir()]
    by_uid = Counter(str(ds.SOPInstanceUID) for ds in received_files)
    assert set(by_uid) == set(expected_uids), "the destination got objects of no final job"
    for truth in truths.values():
        srs = {str(ds.SOPInstanceUID) for ds in received_files
               if ds.Modality == "SR" and ds.StudyInstanceUID == truth["study_uid"]}
        assert len(srs) == 1, f"study {truth['study_uid']}: {len(srs)} different SRs"
    resends = sum(by_uid.values()) - len(by_uid)
    print(f"\ncrash test: {len(kills)} kill -9 ({sum(k[0] == 'store' for k in kills)} during C-STORE, "
          f"{sum(k[0] == 'analysis' for k in kills)} during analysis) {kills}; "
          f"{len(acked)} acknowledged instances, 0 lost; {len(by_uid)} result objects, "
          f"{resends} same-UID re-sends after crashes")


def _plant_partials(data_dir, source_file):
    """Leftovers of writes interrupted by a crash: a complete, valid instance under a .partial
    name in the spool (of a SOP that was never acknowledged), and a half result file."""
    ds = pydicom.dcmread(source_file)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = PLANTED_SOP
    spool = Spool(data_dir / "spool")
    final = spool.path_for(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), PLANTED_SOP)
    final.parent.mkdir(parents=True, exist_ok=True)
    leftover = final.with_name(final.name + ".4242.1.partial")
    ds.save_as(leftover, enforce_file_format=True)
    result = data_dir / "results" / "77" / "SR_1.2.3.dcm.4242.2.partial"
    result.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_file, result)
    return [leftover, result]
