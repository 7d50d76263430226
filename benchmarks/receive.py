"""Receive throughput: one series sent by DCMTK storescu to several receivers.

    .venv/bin/python benchmarks/receive.py [--runs 3] [--only ichnode,bare] [--associations 1]

Receivers, each started fresh (empty storage) for every run, all on loopback:
- ichnode        `ichnode serve` as shipped: durable receive (each instance flushed into a
                 prepared spool slot, then the SQLite record) before each success status; the run
                 starts once its slots are ready (the `spool_slots_ready` log line); completion is
                 pushed out of the way (expected_count and quiet_seconds far off) so no analysis
                 runs meanwhile;
- ichnode-noslots the same without prepared slots: file fsync + rename + directory fsync;
- ichnode-nosync the same with every fsync and fdatasync a no-op and SQLite synchronous=OFF: NOT a
                 configuration, a diagnosis that splits ichnode's time into durability and software;
- bare           a bare pynetdicom SCP (this file, --bare-scp) that writes event.encoded_dataset()
                 to a file without fsync: the floor of an SCP built on pynetdicom's acceptor;
- storescp       DCMTK storescp writing files (no fsync);
- orthanc        Orthanc (Debian package) storing into its storage area and SQLite index.

The series: 300 slices of 512 x 512 (synthetic, 0.5 mm: the phantom covers 150 mm, so 0.625 mm
gives 240 slices and 0.5 mm gives the 300 the issue asks for). Time = storescu's wall time from
start to exit (association, 300 C-STOREs, release); with --associations N the series is split over
N concurrent storescu processes. Figures are printed, not asserted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (MB, WORK, Orthanc, Proc, free_port, machine, orthanc_binary,  # noqa: E402
                          print_table, series, start_ichnode, storescu, wait_port, wait_until)
from ichnode.config import SpoolConfig  # noqa: E402
from ichnode.store.durable import fsync_dir  # noqa: E402
from ichnode.store.spool import Spool  # noqa: E402
from ichnode.synth import SynthSpec  # noqa: E402

SLOTS = SpoolConfig.prepared_slots  # as ichnode ships
SPEC = SynthSpec(subtype="iph", volume_ml=20.0, thickness_mm=0.5, matrix=512, seed=300)


# --- the bare pynetdicom SCP (run as a subprocess of this file) ---------------------------------
def bare_scp(port: int, folder: Path) -> None:
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
    from pynetdicom.sop_class import CTImageStorage

    folder.mkdir(parents=True, exist_ok=True)

    def on_store(event):
        with open(folder / f"{event.request.AffectedSOPInstanceUID}.dcm", "wb") as fh:
            fh.write(event.encoded_dataset())
        return 0x0000

    ae = AE(ae_title="BARE")
    ae.maximum_pdu_size = 0  # as ichnode's default: unlimited
    ae.add_supported_context(CTImageStorage, ALL_TRANSFER_SYNTAXES)
    ae.start_server(("127.0.0.1", port), block=True, evt_handlers=[(evt.EVT_C_STORE, on_store)])


# --- diagnosis only: ichnode with every sync off, to attribute its time --------------------------
def ichnode_without_sync(config_path: str) -> int:
    """`ichnode serve` with os.fsync a no-op and SQLite synchronous=OFF. NOT a configuration: it
    shows how much of ichnode's receive time is durability and how much is software."""
    import os as _os

    from ichnode import cli
    from ichnode.store import jobs

    _os.fsync = _os.fdatasync = lambda fd: None
    jobs.JobStore.SYNCHRONOUS = "OFF"
    return cli.main(["serve", "-c", config_path])


# --- receivers: start fresh, return (called AE, port, count of stored instances, stop) ----------
def run_ichnode(workdir: Path, durable: bool = True, slots: bool = True):
    port = free_port()
    launcher = None if durable else [sys.executable, __file__, "--ichnode-without-sync"]
    proc = start_ichnode(workdir, port, [], launcher=launcher,
                         assembly={"expected_count": 1_000_000, "quiet_seconds": 86_400},
                         spool={"prepared_slots": SLOTS if slots else 0})

    def count():
        with sqlite3.connect(workdir / "var" / "ichnode.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
    return "ICHNODE", port, count, proc.stop


def run_bare(workdir: Path):
    port = free_port()
    folder = workdir / "files"
    proc = Proc([sys.executable, __file__, "--bare-scp", str(port), str(folder)],
                workdir / "bare.log")
    wait_port(proc, port, "bare pynetdicom SCP")
    return "BARE", port, lambda: len(list(folder.glob("*.dcm"))), proc.stop


def run_storescp(workdir: Path):
    exe = shutil.which("storescp")
    if exe is None:
        raise SystemExit("storescp (Debian package dcmtk) is not installed")
    port = free_port()
    folder = workdir / "files"
    folder.mkdir(parents=True)
    proc = Proc([exe, "--aetitle", "STORESCP", "--output-directory", str(folder), str(port)],
                workdir / "storescp.log")
    wait_port(proc, port, "storescp")
    return "STORESCP", port, lambda: len(list(folder.iterdir())), proc.stop


def run_orthanc(workdir: Path):
    server = Orthanc(workdir / "orthanc").start()
    return (server.aet, server.dicom_port, lambda: server.get("/statistics")["CountInstances"],
            server.stop)


RECEIVERS = {
    "ichnode": ("ichnode (durable, prepared slots)", run_ichnode),
    "ichnode-noslots": ("ichnode (durable, no prepared slots)",
                        lambda workdir: run_ichnode(workdir, slots=False)),
    "ichnode-nosync": ("ichnode, fsync and SQLite sync off (diagnosis only)",
                       lambda workdir: run_ichnode(workdir, durable=False)),
    "bare": ("bare pynetdicom SCP (no fsync)", run_bare),
    "storescp": ("DCMTK storescp", run_storescp),
    "orthanc": ("Orthanc 1.10 (Debian)", run_orthanc),
}


def flush_costs(size: int, count: int = 100) -> dict[str, float]:
    """Milliseconds per instance-sized durable write on the spool's file system, by step: what
    ichnode's receive pays per instance on top of the software path (same steps as spool.write
    and JobStore.record_instance)."""
    folder = WORK / "flush-costs"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    data = os.urandom(size)
    costs = {}

    for label, file_sync, dir_sync in (("write, no fsync", False, False),
                                       ("write + fsync", True, False),
                                       ("write + fsync + rename + directory fsync", True, True)):
        start = time.perf_counter()
        for i in range(count):
            tmp, final = folder / f"{i}.partial", folder / f"{label[:12]}-{i}.dcm"
            with open(tmp, "wb") as fh:
                fh.write(data)
                if file_sync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, final)
            if dir_sync:
                fsync_dir(folder)
        costs[label] = (time.perf_counter() - start) / count * 1000
    spool = Spool(folder / "spool")
    spool.use_slots(count, (size * 5 // 4) & ~1)
    wait_until(lambda: spool.slots.ready >= count, 120, what="prepared slots")
    start = time.perf_counter()
    for i in range(count):
        spool.write(spool.path_for("1", "2", str(i)), [data])
    costs["prepared slot: write + checksum + fdatasync (spool.write with slots)"] = \
        (time.perf_counter() - start) / count * 1000
    spool.close()
    db = sqlite3.connect(folder / "wal.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
    for level, use in (("NORMAL", "instance records"), ("FULL", "job state")):
        db.execute(f"PRAGMA synchronous={level}")
        start = time.perf_counter()
        for i in range(count):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?)", (f"{level}.{i}", "x" * 200))
            db.execute("COMMIT")
        costs[f"SQLite WAL commit, synchronous={level} ({use})"] = \
            (time.perf_counter() - start) / count * 1000
    db.close()
    shutil.rmtree(folder, ignore_errors=True)
    return costs


def measure(name: str, files: list[Path], run: int, associations: int = 1) -> float:
    """One run: a fresh receiver, one storescu association, every instance checked as stored."""
    workdir = WORK / "receive" / f"{name}-{run}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    called, port, count, stop = RECEIVERS[name][1](workdir)
    # The receivers before this one left up to 300 MB of unflushed files; written back now, they
    # would land on this run's flushes (only the durable receivers pay for flushes).
    os.sync()
    try:
        elapsed = storescu(files, port, called, associations=associations)
        stored = wait_until(lambda: count() >= len(files) and count(), 30,
                            what=f"{name} to hold every instance")
        if stored != len(files):
            raise RuntimeError(f"{name}: {stored} instances stored, {len(files)} sent")
    finally:
        stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"  run {run + 1}: {name} {elapsed:.3f} s", flush=True)
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(RECEIVERS),
                        help=f"comma-separated receivers ({', '.join(RECEIVERS)})")
    parser.add_argument("--associations", type=int, default=1,
                        help="concurrent storescu associations the series is split over")
    parser.add_argument("--bare-scp", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--ichnode-without-sync", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_scp:
        bare_scp(int(args.bare_scp[0]), Path(args.bare_scp[1]))
        return 0
    if args.ichnode_without_sync:
        return ichnode_without_sync(args.ichnode_without_sync)
    # DCMTK (storescu, storescp and the DCMTK inside Orthanc) leaves Nagle's algorithm on unless
    # TCP_NODELAY=1: its C-STORE response then waits for the peer's delayed ACK, about 40 ms per
    # image on loopback, which would measure the TCP stack instead of the receivers.
    os.environ.setdefault("TCP_NODELAY", "1")
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(RECEIVERS)
    if unknown:
        parser.error(f"unknown receivers {sorted(unknown)}")
    if "orthanc" in names and orthanc_binary() is None:
        print("Orthanc is not installed: leaving it out")
        names.remove("orthanc")

    files, truth = series("series-300", SPEC)
    total = sum(p.stat().st_size for p in files)
    print(f"machine: {machine()}")
    print(f"series: {len(files)} slices, {SPEC.matrix}x{SPEC.matrix}, {SPEC.thickness_mm} mm, "
          f"{total / MB:.1f} MB ({truth['transfer_syntax']}); {args.runs} runs per receiver, "
          "median reported")
    # Runs go round the receivers in turn, so that a burst of load on the machine (other work on
    # its few cores, disk flushes) spreads over all of them instead of one.
    times: dict[str, list[float]] = {name: [] for name in names}
    for run in range(args.runs):
        for name in names:
            times[name].append(measure(name, files, run, args.associations))
    medians = {name: (statistics.median(t), min(t), max(t)) for name, t in times.items()}
    rows = []
    for name in names:
        med, lo, hi = medians[name]
        ratio = (f"{med / medians['bare'][0]:.2f}" if "bare" in medians else "")
        rows.append([RECEIVERS[name][0], f"{med:.3f}", f"{lo:.3f} - {hi:.3f}",
                     f"{len(files) / med:.0f}", f"{total / MB / med:.0f}", ratio])
    print_table(f"Receive: {len(files)} x {SPEC.matrix}x{SPEC.matrix} CT slices by storescu "
                f"({total / MB:.0f} MB, {args.associations} association(s))",
                ["receiver", "median s", "min - max s", "images/s", "MB/s", "time / bare SCP"], rows)
    costs = flush_costs(int(total / len(files)))
    print_table(f"Durable-write steps on this file system ({total / len(files) / MB:.2f} MB files, "
                "ms per instance)", ["step", "ms"], [[k, f"{v:.2f}"] for k, v in costs.items()])
    if "ichnode" in medians:
        med = medians["ichnode"][0]
        verdict = "met" if med <= 1.5 else "NOT met"
        print(f"issue target: durable receive of the series <= 1.5 s: {med:.2f} s ({verdict})")
        if "bare" in medians:
            print(f"issue target: no slower than the bare pynetdicom SCP: ichnode / bare = "
                  f"{med / medians['bare'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
