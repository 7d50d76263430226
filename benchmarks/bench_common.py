"""Shared parts of the benchmarks: cached synthetic series, real peers, the machine description.

The benchmarks print figures; they assert nothing about time. Run them from the repository root
with the project's virtualenv, e.g. `.venv/bin/python benchmarks/receive.py`.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from ichnode.config import SpoolConfig  # noqa: E402
from ichnode.synth import SynthSpec, write_series  # noqa: E402
from ichnode.loopback import LoggedProcess, free_port, port_open, wait_until  # noqa: E402,F401
from tests.orthanc_peer import Orthanc, orthanc_binary  # noqa: E402,F401

WORK = REPO / "var" / "bench"
MB = 1e6


def series(name: str, spec: SynthSpec) -> tuple[list[Path], dict]:
    """A synthetic series written once under var/bench/<name> and reused while the spec is the same."""
    folder = WORK / name
    marker = folder / "spec.json"
    wanted = json.dumps(repr(spec))
    if not (marker.exists() and marker.read_text() == wanted):
        shutil.rmtree(folder, ignore_errors=True)
        print(f"writing synthetic series {name} ...", flush=True)
        write_series(folder, spec)
        marker.write_text(wanted)
    truth = json.loads((folder / "truth.json").read_text())
    return sorted(folder.glob("CT*.dcm")), truth


Proc = LoggedProcess


def wait_port(proc: Proc, port: int, what: str, timeout: float = 60) -> None:
    wait_until(lambda: port_open(port) or not proc.alive(), timeout, what=what)
    if not proc.alive():
        raise RuntimeError(f"{what} exited:\n{proc.log()[-3000:]}")


def start_ichnode(workdir: Path, port: int, destinations: list[dict],
                  launcher: list[str] | None = None, **sections) -> Proc:
    """`ichnode serve` as a separate process with its own data directory under workdir.

    launcher: the command that takes the config path instead of `python -m ichnode.cli serve -c`."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"data_dir": str(workdir / "var"), "log_format": "json",
              "node": {"ae_title": "ICHNODE", "host": "127.0.0.1", "port": port},
              "destinations": destinations, **sections}
    path = workdir / "ichnode.yaml"
    path.write_text(yaml.safe_dump(config))
    command = launcher or [sys.executable, "-m", "ichnode.cli", "serve", "-c"]
    proc = Proc([*command, str(path)], workdir / "ichnode.log")
    wait_port(proc, port, "ichnode serve")
    if sections.get("spool", {}).get("prepared_slots", SpoolConfig.prepared_slots):
        # A node in service has its slots ready; one just started prepares them first.
        wait_until(lambda: "spool_slots_ready" in proc.log(), 120, what="ichnode's spool slots")
    return proc


def storescu(files: list[Path], port: int, called: str, calling: str = "BENCHSCU",
             associations: int = 1) -> float:
    """Send files with DCMTK storescu, split over `associations` concurrent storescu processes
    (one association each); returns the wall time in seconds until the last one exits."""
    exe = shutil.which("storescu")
    if exe is None:
        raise SystemExit("storescu (Debian package dcmtk) is not installed")
    parts = [files[i::associations] for i in range(associations)]
    start = time.perf_counter()
    procs = [subprocess.Popen([exe, "-aet", calling, "-aec", called, "127.0.0.1", str(port),
                               *map(str, part)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for part in parts if part]
    errors = [(p.wait(), p.stderr.read().decode(errors="replace")) for p in procs]
    elapsed = time.perf_counter() - start
    for p in procs:
        p.stderr.close()
    failed = [(rc, err) for rc, err in errors if rc != 0]
    if failed:
        raise RuntimeError(f"storescu failed ({failed[0][0]}): {failed[0][1][-2000:]}")
    return elapsed


def machine() -> str:
    """nproc, CPU model and RAM, for the figures' context."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()} CPU ({model}), {ram} RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, load average {load:.2f} at start")


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, so the output can go into docs/performance.md as it is."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(flush=True)
