"""Concurrent load, full size: 8 DCMTK storescu senders at once, each with a 300-slice 512 x 512
series, into `ichnode serve` while it analyses and sends results to a DCMTK storescp.

    .venv/bin/python benchmarks/load.py [--senders 8] [--warmup] [--keep]

The 8 series are copies of the cached synthetic series of benchmarks/receive.py (var/bench/series-300)
with their own UIDs. Prints: instances acknowledged and recorded, jobs done, send time and
throughput, time until the last job is DONE, analysis time per series, instances stored while an
analysis was running, and the node's peak RSS (VmHWM). Figures are printed, not asserted. The
bounded CI variant is tests/reliability/test_load.py (same harness: tests/reliability/loadgen.py).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import WORK, machine, print_table, series  # noqa: E402
from ichnode.synth import SynthSpec  # noqa: E402
from tests.reliability.loadgen import copy_series, run_load  # noqa: E402

SPEC = SynthSpec(subtype="iph", volume_ml=20.0, thickness_mm=0.5, matrix=512, seed=300)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--warmup", action="store_true",
                        help="send one more series first; start the senders once it is being analysed")
    parser.add_argument("--keep", action="store_true", help="keep var/bench/load afterwards")
    args = parser.parse_args(argv)
    print(machine(), flush=True)
    files, _ = series("series-300", SPEC)
    workdir = WORK / "load"
    shutil.rmtree(workdir, ignore_errors=True)
    count = args.senders + (1 if args.warmup else 0)
    print(f"copying the {len(files)}-slice series {count} times with new UIDs ...", flush=True)
    copies = [copy_series(files, workdir / f"copy{i}", i) for i in range(count)]
    warmup = copies.pop(0) if args.warmup else None
    try:
        r = run_load(workdir / "run", copies, warmup=warmup, timeout_s=3600)
    finally:
        if not args.keep:
            for folder in workdir.glob("copy*"):
                shutil.rmtree(folder, ignore_errors=True)
    rows = [
        ["senders x slices", f"{r.senders} x {r.slices} ({r.matrix}x{r.matrix})"],
        ["instances sent / acknowledged / recorded",
         f"{r.instances_sent} / {r.instances_acknowledged} / {r.instances_recorded}"],
        ["jobs done", str(r.jobs_done)],
        ["result objects received by storescp", str(r.results_received)],
        ["all streams received in", f"{r.send_wall_s:.1f} s ({r.receive_mb_s:.0f} MB/s)"],
        ["last job DONE after", f"{r.total_wall_s:.1f} s"],
        ["analysis per series (median, max)",
         f"{statistics.median(r.analysis_s):.1f} s, {max(r.analysis_s):.1f} s"],
        ["instances stored while an analysis ran", str(r.received_while_analysing)],
        ["node peak RSS (VmHWM)", f"{r.peak_rss_mb:.0f} MB"],
    ]
    print_table("Concurrent load (ichnode serve, DCMTK storescu x N -> storescp)", ["figure", "value"],
                rows)
    return 0 if r.instances_recorded == r.instances_sent and r.jobs_done == len(copies) + bool(warmup) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
