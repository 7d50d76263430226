"""Concurrent-load harness shared by tests/reliability/test_load.py (bounded, CI) and
benchmarks/load.py (full size, prints figures).

N DCMTK storescu processes send N series at once to `ichnode serve` (a separate process) while it
analyses the series that are already complete and sends results to a DCMTK storescp. The N series
are copies of one synthetic series with their own Study / Series / SOP Instance UIDs (same-length
UIDs patched in the bytes, so copying 2400 large files costs no decode and re-encode).
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import yaml

from tests.helpers import free_port, port_open, wait_until
from tests.reliability.peers import acknowledged, rss_peak_mb


@dataclass
class LoadResult:
    senders: int
    slices: int
    matrix: int
    instances_sent: int
    instances_acknowledged: int
    instances_recorded: int
    jobs_done: int
    results_received: int
    send_wall_s: float  # first storescu start to last storescu exit
    total_wall_s: float  # first storescu start to the last job DONE
    peak_rss_mb: float  # VmHWM of the node process
    analysis_s: list[float] = field(default_factory=list)  # per job: assemble + infer + write
    receive_mb_s: float = 0.0
    received_while_analysing: int = 0  # instances of the N streams stored while an analysis ran


def copy_series(files: list[Path], dest: Path, copy: int) -> list[Path]:
    """A copy of a series with new same-length Study/Series/SOP Instance UIDs (bytes patched)."""
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    dest.mkdir(parents=True, exist_ok=True)

    def renamed(uid: str) -> bytes:
        return (uid[:-3] + f"{copy:03d}").encode()  # same length: no element length changes

    common = [(str(first.StudyInstanceUID).encode(), renamed(str(first.StudyInstanceUID))),
              (str(first.SeriesInstanceUID).encode(), renamed(str(first.SeriesInstanceUID)))]
    out = []
    for path in files:
        data = path.read_bytes()
        sop = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        for old, new in common + [(sop.encode(), renamed(sop))]:
            data = data.replace(old, new)
        target = dest / path.name
        target.write_bytes(data)
        out.append(target)
    return out


def _db(path: Path, sql: str):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def run_load(workdir: Path, series_files: list[list[Path]], warmup: list[Path] | None = None,
             timeout_s: float = 600, log=print) -> LoadResult:
    """Send each file list in its own storescu, all at once; wait for every job; return figures.

    warmup: a series sent first; the N senders start once its analysis is running."""
    storescu, storescp = shutil.which("storescu"), shutil.which("storescp")
    if storescu is None or storescp is None:
        raise RuntimeError("storescu / storescp (Debian package dcmtk) are not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    dest_port, port = free_port(), free_port()
    received = workdir / "received"
    received.mkdir(exist_ok=True)
    procs = []
    try:
        dest_log = open(workdir / "storescp.log", "wb")
        procs.append((subprocess.Popen([storescp, "--aetitle", "DEST", "--output-directory",
                                        str(received), "--accept-all", str(dest_port)],
                                       stdout=dest_log, stderr=subprocess.STDOUT), dest_log))
        wait_until(lambda: port_open(dest_port), 30, what="storescp")
        data_dir = workdir / "var"
        config = workdir / "ichnode.yaml"
        config.write_text(yaml.safe_dump({
            "data_dir": str(data_dir), "log_format": "json",
            "node": {"ae_title": "ICHNODE", "host": "127.0.0.1", "port": port,
                     "max_associations": max(10, 2 * len(series_files))},
            "assembly": {"quiet_seconds": 600, "sweep_interval_s": 0.2},
            "retention": {"purge_after_hours": None},
            "destinations": [{"name": "dest", "ae_title": "DEST", "host": "127.0.0.1",
                              "port": dest_port}]}))
        node_log = open(workdir / "ichnode.log", "wb")
        node = subprocess.Popen([sys.executable, "-m", "ichnode.cli", "serve", "-c", str(config)],
                                stdout=node_log, stderr=subprocess.STDOUT)
        procs.append((node, node_log))
        wait_until(lambda: port_open(port) or node.poll() is not None, 60, what="ichnode serve")
        if node.poll() is not None:
            raise RuntimeError((workdir / "ichnode.log").read_text()[-3000:])

        db = data_dir / "ichnode.sqlite"
        if warmup:
            subprocess.run([storescu, "-aet", "WARMUP", "-aec", "ICHNODE", "127.0.0.1", str(port),
                            *map(str, warmup)], check=True, capture_output=True, timeout=timeout_s)
            wait_until(lambda: _db(db, "SELECT id FROM jobs WHERE state='analysing'"), 60,
                       what="the warm-up series' analysis to start")
        start = time.perf_counter()
        senders = [subprocess.Popen([storescu, "-v", "-aet", f"SCU{i}", "-aec", "ICHNODE",
                                     "127.0.0.1", str(port), *map(str, files)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for i, files in enumerate(series_files)]
        outputs = [s.communicate(timeout=timeout_s)[0] for s in senders]
        send_wall = time.perf_counter() - start
        failed = [i for i, s in enumerate(senders) if s.returncode != 0]
        if failed:
            raise RuntimeError(f"storescu {failed} failed:\n{outputs[failed[0]][-2000:]}")
        acked = set().union(*(acknowledged(o) for o in outputs))
        log(f"{len(acked)} instances acknowledged by {len(senders)} senders in {send_wall:.1f} s")

        jobs = len(series_files) + (1 if warmup else 0)
        wait_until(lambda: len(_db(db, "SELECT id FROM jobs WHERE state='done'")) >= jobs
                   or node.poll() is not None, timeout_s, interval=0.2, what="every job to be DONE")
        total_wall = time.perf_counter() - start
        peak = rss_peak_mb(node.pid) or float("nan")
        wait_until(lambda: len(list(received.iterdir())) >= len(
            [p for (r,) in _db(db, "SELECT results FROM jobs") for p in json.loads(r)]), 60,
            what="storescp to have written every result")
    finally:
        for proc, fh in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            fh.close()
    timings = [json.loads(t) for (t,) in _db(db, "SELECT timings FROM jobs WHERE state='done'")]
    busy = [(t["completed_at"], t["completed_at"] + t.get("assemble_s", 0) + t.get("infer_s", 0)
             + t.get("write_s", 0)) for t in timings if "completed_at" in t]
    stream_calls = {f"SCU{i}" for i in range(len(series_files))}
    overlap = sum(1 for aet, at in _db(db, "SELECT calling_aet, received FROM instances")
                  if aet in stream_calls and any(a <= at <= b for a, b in busy))
    sent_bytes = sum(p.stat().st_size for files in series_files for p in files)
    return LoadResult(
        senders=len(series_files), slices=len(series_files[0]),
        matrix=int(pydicom.dcmread(series_files[0][0], stop_before_pixels=True).Rows),
        instances_sent=sum(map(len, series_files)), instances_acknowledged=len(acked),
        instances_recorded=_db(db, "SELECT COUNT(*) FROM instances WHERE calling_aet != 'WARMUP'")[0][0],
        jobs_done=len(timings), results_received=len(list(received.iterdir())),
        send_wall_s=send_wall, total_wall_s=total_wall, peak_rss_mb=peak,
        analysis_s=[t.get("assemble_s", 0) + t.get("infer_s", 0) + t.get("write_s", 0)
                    for t in timings],
        receive_mb_s=sent_bytes / 1e6 / send_wall, received_while_analysing=overlap)
