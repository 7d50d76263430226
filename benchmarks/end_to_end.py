"""End to end: a CT series in by C-STORE, the SR stored in Orthanc, per stage.

    .venv/bin/python benchmarks/end_to_end.py [--runs 1] [--only small,large]

For each series, a fresh Orthanc (Debian package) and a fresh `ichnode serve` whose destination is
Orthanc (C-STORE). DCMTK storescu sends the series to ichnode; the series completes by count
(ImagesInAcquisition), is analysed by the configured engine (default: classical) and the SEG, SR
and secondary captures go to Orthanc, whose REST API is polled every 20 ms for the SR.

Reported per series: receive (storescu wall time), completion wait (last slice recorded -> job
starts: the sweep tick), assemble, infer, write, send (from the job store's `timings`), and the total
from the last slice arriving to the SR being visible in Orthanc; peak memory is the node process'
VmHWM. Series: `small` 40 slices of 3.75 mm, `large` 300 slices of 0.5 mm, both 512 x 512 (the
phantom covers 150 mm: 5 mm gives 30 slices and 0.625 mm 240, so the slice counts the issue names
are reached with these thicknesses).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (WORK, Orthanc, free_port, machine, orthanc_binary, print_table,  # noqa: E402
                          series, start_ichnode, storescu, wait_until)
from ichnode.synth import SynthSpec  # noqa: E402

# name: (label, folder under var/bench, spec); the large one is receive.py's series, reused.
SERIES = {
    "small": ("40 x 3.75 mm", "series-40",
              SynthSpec(subtype="sdh", volume_ml=25.0, thickness_mm=3.75, matrix=512, seed=40)),
    "large": ("300 x 0.5 mm", "series-300",
              SynthSpec(subtype="iph", volume_ml=20.0, thickness_mm=0.5, matrix=512, seed=300)),
}


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def job_row(db_path: Path) -> dict | None:
    if not db_path.exists():
        return None
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT 1").fetchone()
    return dict(row) if row else None


def sr_seen(orthanc: Orthanc, study_uid: str) -> float | None:
    found = json.loads(orthanc.request(
        "POST", "/tools/find", json.dumps({"Level": "Series", "Query": {
            "StudyInstanceUID": study_uid, "Modality": "SR"}}).encode(), "application/json")[2])
    return time.time() if found else None


def run_once(name: str, run: int) -> dict:
    _, folder, spec = SERIES[name]
    files, truth = series(folder, spec)
    workdir = WORK / "end_to_end" / f"{name}-{run}"
    shutil.rmtree(workdir, ignore_errors=True)
    orthanc = Orthanc(workdir / "orthanc").start()
    node_port = free_port()
    node = None
    try:
        node = start_ichnode(workdir, node_port, [
            {"name": "orthanc", "ae_title": orthanc.aet, "host": "127.0.0.1",
             "port": orthanc.dicom_port}])
        receive_s = storescu(files, node_port, "ICHNODE")
        seen_at = wait_until(lambda: sr_seen(orthanc, truth["study_uid"]), 1800,
                             what="the SR in Orthanc", interval=0.02)
        job = wait_until(lambda: (j := job_row(workdir / "var" / "ichnode.sqlite"))
                         and j["state"] in ("done", "failed") and j, 120, what="the job to finish")
        peak = peak_rss_mb(node.proc.pid)
    finally:
        if node is not None:
            node.stop()
        orthanc.stop()
    if job["state"] != "done":
        raise RuntimeError(f"{name}: job {job['state']}: {job['error'] or job['reason']}")
    t = json.loads(job["timings"])
    last = t["last_received_at"]
    result = {
        "receive": receive_s,
        "completion wait": t["completed_at"] - last,
        "assemble": t.get("assemble_s"), "infer": t.get("infer_s"), "write": t.get("write_s"),
        "send": t.get("send_s"),
        "last slice -> SR in Orthanc": seen_at - last,
        "peak MB": peak,
        "slices": len(files),
    }
    print(f"  run {run + 1}: {name} " + ", ".join(
        f"{k} {v:.2f}" for k, v in result.items() if isinstance(v, float)), flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", default=",".join(SERIES), help="small, large or both")
    args = parser.parse_args(argv)
    if orthanc_binary() is None:
        raise SystemExit("Orthanc (Debian package orthanc) is not installed")
    os.environ.setdefault("TCP_NODELAY", "1")  # DCMTK's Nagle stall: see receive.py
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    print(f"machine: {machine()}")
    results = {name: [] for name in names}
    for run in range(args.runs):
        for name in names:
            results[name].append(run_once(name, run))
    stages = ["receive", "completion wait", "assemble", "infer", "write", "send",
              "last slice -> SR in Orthanc", "peak MB"]
    rows = []
    for name in names:
        med = {k: statistics.median(r[k] for r in results[name] if r[k] is not None)
               for k in stages}
        analysis = med["last slice -> SR in Orthanc"] - med["completion wait"]
        # Not in a timed stage: reading the headers, quantification, job store updates, and the
        # time from the send finishing to the REST poll seeing the SR.
        other = analysis - sum(med[k] for k in ("assemble", "infer", "write", "send"))
        rows.append([f"{SERIES[name][0]} ({results[name][0]['slices']} slices)"]
                    + [f"{med[k]:.2f}" for k in stages[:-2]]
                    + [f"{other:.2f}", f"{med['last slice -> SR in Orthanc']:.2f}",
                       f"{analysis:.2f}", f"{med['peak MB']:.0f}"])
    print_table("End to end: storescu -> ichnode -> Orthanc (seconds, median of "
                f"{args.runs} run(s))",
                ["series", "receive", "completion wait", "assemble", "infer", "write", "send",
                 "other", "last slice -> SR in Orthanc", "same, less completion wait", "peak RSS MB"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
