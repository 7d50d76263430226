"""Time to notification: first image received -> HL7 ORU^R01 acknowledged by the RIS.

A node in process (classical engine), DCMTK storescu sending a synthetic 5 mm head CT with an IPH,
DCMTK storescp as the PACS and an MLLP listener as the RIS, all on loopback. One series at a time;
prints each stage and the total, per run and the median.

    .venv/bin/python benchmarks/time_to_notification.py --matrix 512 --runs 3
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ichnode.config import load_config  # noqa: E402
from ichnode.log import setup_logging  # noqa: E402
from ichnode.node import Node  # noqa: E402
from ichnode.synth import SynthSpec, write_series  # noqa: E402
from tests.helpers import free_port, port_open, wait_until  # noqa: E402
from tests.triage.mllp import MllpListener  # noqa: E402

STAGES = ("receive", "complete", "assemble", "infer", "write", "send", "notify")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--thickness", type=float, default=5.0)
    parser.add_argument("--volume-ml", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    setup_logging("json", level=logging.WARNING)
    storescu, storescp = shutil.which("storescu"), shutil.which("storescp")
    if not storescu or not storescp:
        print("needs DCMTK (storescu, storescp)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="ichnode-ttn-"))
    pacs_port = free_port()
    pacs = subprocess.Popen([storescp, "--aetitle", "PACS", "--output-directory", str(work / "pacs"),
                             "--accept-all", str(pacs_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    (work / "pacs").mkdir()
    wait_until(lambda: port_open(pacs_port), 20, what="storescp")
    rows = []
    try:
        with MllpListener() as ris:
            config = load_config(None, overrides={
                "data_dir": str(work / "var"), "log_format": "json", "node.port": 0,
                "node.host": "127.0.0.1",
                "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1",
                                  "port": pacs_port}],
                "notify": {"mllp": {"host": "127.0.0.1", "port": ris.port}}})
            node = Node(config).start()
            try:
                for run in range(args.runs):
                    folder = work / f"series{run}"
                    write_series(folder, SynthSpec(subtype="iph", volume_ml=args.volume_ml,
                                                   thickness_mm=args.thickness, matrix=args.matrix,
                                                   seed=100 + run))
                    files = sorted(str(p) for p in folder.glob("*.dcm"))
                    subprocess.run([storescu, "-aet", "CT", "-aec", "ICHNODE", "127.0.0.1",
                                    str(node.port), *files], check=True, capture_output=True)
                    note = wait_until(lambda: [n for n in node.outbox.notifications()
                                               if n.state == "sent"][run:], 600,
                                      what="the notification")[0]
                    job = node.store.job(note["job_id"])
                    series = node.store.series(job.series_key)
                    t = job.timings
                    stage = {
                        "receive": t["last_received_at"] - series.first_received,
                        "complete": t["completed_at"] - t["last_received_at"],
                        "assemble": t.get("assemble_s", 0.0), "infer": t.get("infer_s", 0.0),
                        "write": t.get("write_s", 0.0), "send": t.get("send_s", 0.0),
                        "notify": note.sent_at - note.created,
                    }
                    rows.append((len(files), stage, note.time_to_delivery_s))
                    print(f"run {run + 1}: {len(files)} slices {args.matrix}x{args.matrix}, "
                          + ", ".join(f"{k} {v:.2f} s" for k, v in stage.items())
                          + f" | time to notification {note['time_to_notification_s']:.2f} s",
                          flush=True)
            finally:
                node.stop()
    finally:
        pacs.terminate()
        pacs.wait()
        shutil.rmtree(work, ignore_errors=True)
    median = statistics.median(r[2] for r in rows)
    print(f"median time to notification over {len(rows)} runs: {median:.2f} s "
          f"({os.cpu_count()} CPUs, {args.thickness:g} mm, matrix {args.matrix})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
