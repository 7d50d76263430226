"""Helpers for the reliability tests: real peers (storescu, pynetdicom), raw sends, job-store reads."""
from __future__ import annotations

import contextlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pydicom
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ichnode.config import load_config
from ichnode.node import Node
from ichnode.store.jobs import JobState

from tests.helpers import port_open, require_tool, wait_until

_SENDING = re.compile(r"^I: Sending file: (.+)$")
_RESPONSE = re.compile(r"^I: Received Store Response \((\w+)")


def storescu(files, port: int, *extra: str, aec: str = "ICHNODE", aet: str = "SCANNER",
             timeout: float = 120) -> subprocess.CompletedProcess:
    """Run DCMTK storescu -v on files; its output is what the acknowledgement parser reads."""
    args = [require_tool("storescu"), "-v", "-aet", aet, "-aec", aec, "-to", "20", *extra,
            "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def acknowledged(output: str) -> set[str]:
    """Files for which storescu's verbose output shows a Success or Warning store response."""
    acked, current = set(), None
    for line in output.splitlines():
        if m := _SENDING.match(line.strip()):
            current = m.group(1)
        elif (m := _RESPONSE.match(line.strip())) and current is not None:
            if m.group(1) in ("Success", "Warning"):
                acked.add(current)
            current = None
    return acked


def db_rows(db_path: Path, sql: str, args=()) -> list[tuple]:
    """Read the node's job store from outside the node (read-only; WAL lets the node go on)."""
    if not Path(db_path).exists():
        return []
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []  # the schema is not created yet
    finally:
        db.close()


def latest_jobs(db_path: Path) -> dict[str, tuple[int, str]]:
    """series_uid -> (job id, state) of each series' newest job."""
    rows = db_rows(db_path, "SELECT s.series_uid, j.id, j.state FROM jobs j JOIN series s"
                            " ON s.key = j.series_key ORDER BY j.id")
    return {series: (job, state) for series, job, state in rows}


def all_done(db_path: Path, series_uids) -> bool:
    jobs = latest_jobs(db_path)
    return all(jobs.get(uid, (0, ""))[1] == JobState.DONE.value for uid in series_uids)


def start_node(tmp_path: Path, destinations=(), **overrides) -> Node:
    """An in-process node on an ephemeral loopback port with the embedded config plus overrides."""
    config = load_config(None, overrides={
        "data_dir": str(tmp_path / "var"), "node.port": 0, "node.host": "127.0.0.1",
        "destinations": list(destinations), "assembly.sweep_interval_s": 0.2,
        "retention.purge_after_hours": None,
        "spool.prepared_slots": 0,  # 320 MB of slots per test node; slots: tests/store/test_slots.py
        **overrides})
    return Node(config).start()


def serve_args(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "ichnode.cli", "serve", "-c", str(config_path)]


def wait_serving(proc, port: int, timeout: float = 60) -> None:
    wait_until(lambda: port_open(port) or proc.proc.poll() is not None, timeout, what="ichnode serve")
    if proc.proc.poll() is not None:
        raise RuntimeError("ichnode serve exited:\n" + proc.log())


@contextlib.contextmanager
def association(port: int, aet: str = "SCANNER", aec: str = "ICHNODE", contexts=None, **kwargs):
    """A pynetdicom association to the node (CT, MR and Verification contexts by default)."""
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for sop_class in contexts or (CTImageStorage, MRImageStorage, Verification):
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):  # one context each
            ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=aec, **kwargs)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def send_raw(assoc, path: Path) -> int | None:
    """C-STORE a file's dataset bytes exactly as they are on disk (no decoding, no re-encoding):
    how a broken or hostile sender gets truncated or garbage bytes to the node. The file meta says
    which SOP class, instance and transfer syntax the request claims. Returns the status or None."""
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        status = assoc.send_c_store(Path(path))
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
    return getattr(status, "Status", None)


def send_dataset(assoc, ds: pydicom.Dataset) -> int | None:
    status = assoc.send_c_store(ds)
    return getattr(status, "Status", None)


def echo_ok(port: int, **kwargs) -> bool:
    """C-ECHO: the node still serves."""
    with association(port, contexts=(Verification,), **kwargs) as assoc:
        if not assoc.is_established:
            return False
        status = assoc.send_c_echo()
        return getattr(status, "Status", None) == 0x0000


def write_with_meta(path: Path, meta_from: pydicom.Dataset, body: bytes) -> Path:
    """A Part 10 file whose file meta is taken from a real instance and whose dataset is body."""
    from pydicom.filewriter import write_file_meta_info
    from pydicom.filebase import DicomBytesIO

    fp = DicomBytesIO()
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta_from.file_meta, enforce_standard=True)
    path.write_bytes(fp.getvalue() + body)
    return path


def dataset_bytes(path: Path) -> tuple[pydicom.Dataset, bytes]:
    """(file meta dataset, encoded dataset bytes after the file meta) of a Part 10 file."""
    from pydicom.filereader import read_preamble, _read_file_meta_info

    with open(path, "rb") as fh:
        read_preamble(fh, False)
        meta = _read_file_meta_info(fh)
        body = fh.read()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    return ds, body


def rss_peak_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) / 1024 if m else None


def files_under(root: Path, pattern: str = "*") -> list[Path]:
    return [p for p in Path(root).rglob(pattern) if p.is_file()] if Path(root).exists() else []


def kill9(proc) -> None:
    proc.proc.kill()  # SIGKILL: no handler, no cleanup, like a power cut for the process
    proc.proc.wait()

