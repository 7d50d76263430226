"""`ichnode demo`: a node and a destination on loopback, synthetic series sent by C-STORE, results
read back at the destination and printed as a table."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pydicom
from pynetdicom import AE, AllStoragePresentationContexts, evt
from rich.console import Console
from rich.table import Table

from ichnode.config import DimseDestination, load_config
from ichnode.dicom.sender import describe, send
from ichnode.loopback import wait_until
from ichnode.node import Node
from ichnode.results.read import sr_value
from ichnode.store.jobs import JobState
from ichnode.synth import SynthSpec, write_series

FINISHED = (JobState.DONE, JobState.FAILED)


def start_destination(folder: Path, ae_title: str = "DEMOPACS"):
    """A minimal storage SCP standing in for the PACS: writes what it receives into folder."""
    folder.mkdir(parents=True, exist_ok=True)

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        ds.save_as(folder / f"{ds.Modality}_{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        return 0x0000

    ae = AE(ae_title=ae_title)
    ae.supported_contexts = AllStoragePresentationContexts
    return ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])


def run_demo(workdir: Path, subtypes: list[str], timeout_s: float = 600,
             config_path: Path | None = None) -> int:
    for part in ("node", "series", "received"):
        shutil.rmtree(workdir / part, ignore_errors=True)
    received = workdir / "received"
    destination = start_destination(received)
    dest_port = destination.server_address[1]
    config = load_config(config_path, overrides={
        "data_dir": str(workdir / "node"), "node.port": 0,
        "destinations": [{"name": "demo-pacs", "ae_title": "DEMOPACS", "host": "127.0.0.1",
                          "port": dest_port}]})
    node = Node(config).start()
    print(f"node ICHNODE on port {node.port}, destination DEMOPACS on port {dest_port}")
    truths = {}
    try:
        for seed, subtype in enumerate(subtypes, start=1):
            folder = workdir / "series" / subtype
            truth = write_series(folder, SynthSpec(subtype=subtype, volume_ml=25.0, seed=seed))
            truths[truth["study_uid"]] = truth
            files = sorted(folder.glob("*.dcm"))
            start = time.perf_counter()
            send([describe(p) for p in files],
                 DimseDestination("node", config.node.ae_title, "127.0.0.1", node.port),
                 calling_aet="DEMOSCU", timeout_s=60, on_sent=lambda uid: None)
            print(f"sent {subtype}: {len(files)} slices in {time.perf_counter() - start:.2f} s")
        def finished():
            jobs = node.store.jobs()
            return len(jobs) >= len(subtypes) and all(j.state in FINISHED for j in jobs) and jobs

        try:
            jobs = wait_until(finished, timeout_s, interval=0.2, what="the demo's results")
        except TimeoutError as exc:
            print(f"demo: {exc}")
            return 1
    finally:
        node.stop()
        destination.shutdown()
    print_demo_table(truths, received)
    failed = [j for j in jobs if j.state is JobState.FAILED]
    return 1 if failed else 0


def print_demo_table(truths: dict, received: Path) -> None:
    by_study: dict[str, list[pydicom.Dataset]] = {}
    for path in received.glob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_study.setdefault(str(ds.StudyInstanceUID), []).append(ds)
    table = Table(title="ichnode demo - AI triage, not for diagnostic use")
    for column in ("subtype", "true mL", "segmented mL", "ABC/2 mL", "error %", "P(any)",
                   "model mL", "files received"):
        table.add_column(column)
    for study_uid, truth in truths.items():
        objects = by_study.get(study_uid, [])
        srs = [ds for ds in objects if ds.Modality == "SR"]
        segmented = sr_value(srs[0], "All hemorrhage", "Volume", "segmentation") if srs else None
        abc = sr_value(srs[0], "Largest lesion", "Volume", "ABC/2") if srs else None
        # Present when networks run (e.g. -c config/models.yaml): detection probability, regression.
        p_any = sr_value(srs[0], "All hemorrhage", "Probability") if srs else None
        model_ml = sr_value(srs[0], "All hemorrhage", "Volume", "regression") if srs else None
        error = (f"{100 * (segmented - truth['volume_ml']) / truth['volume_ml']:+.1f}"
                 if segmented is not None and truth["volume_ml"] > 0 else "")
        kinds = ", ".join(f"{m} x{sum(1 for d in objects if d.Modality == m)}"
                          for m in sorted({d.Modality for d in objects}))
        table.add_row(truth["subtype"], f"{truth['volume_ml']:.1f}", _num(segmented), _num(abc),
                      error, "" if p_any is None else f"{p_any:.2f}", _num(model_ml), kinds)
    Console(width=140).print(table)
    print(json.dumps({"received_dir": str(received)}))


def _num(value) -> str:
    return "" if value is None else f"{value:.1f}"
