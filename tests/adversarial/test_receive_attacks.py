"""Attacks on the receive path against a running `ichnode serve` (issue 13; docs/security.md).

Each test runs an attack from its own loopback source address (127.0.0.0/8 is all local) and
asserts what the node promises: it answers as designed, its peak memory (VmHWM of the serve
process) grows by less than 100 MB, and a real DCMTK storescu from 127.0.0.1 still gets its
series in. Analysis is held off (a long quiet period) so the memory figures are the receive path's.
"""
from __future__ import annotations

import struct
import threading
import time
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from ichnode.dicom import dimse, ul
from ichnode.dicom.status import StoreStatus
from ichnode.synth import SynthSpec, write_series

from tests.helpers import Process, free_port, wait_until, write_config
from tests.rawpeer import (associate, associate_rq, closed_by_node, command, connect, pdv_pdu,
                           read_pdu, status_of)
from tests.reliability.peers import acknowledged, serve_args, storescu, wait_serving

MB = 1024 * 1024
NETWORK_TIMEOUT_S = 4.0
PER_ADDRESS = 6
MAX_PDU = 64 * MB  # the largest the node allows: the declared-length attack at its worst


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    port = free_port()
    config = write_config(tmp / "ichnode.yaml", tmp / "var", port, [],
                          node={"network_timeout_s": NETWORK_TIMEOUT_S, "max_pdu": MAX_PDU,
                                "max_connections_per_address": PER_ADDRESS},
                          assembly={"quiet_seconds": 3600})
    proc = Process(serve_args(config), tmp / "serve.log")
    try:
        wait_serving(proc, port)
        proc.port = port
        series = write_series(tmp / "legit", SynthSpec(subtype="none", matrix=64, seed=11))
        proc.legit = [tmp / "legit" / f for f in series["files"]]
        assert_gets_through(proc)  # warm: the baseline includes a normal receive
        yield proc
    finally:
        proc.stop()


def status(proc, field: str) -> int:
    """A /proc/<pid>/status figure of the serve process (kB for memory, a count for Threads)."""
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_mb(proc) -> float:
    return status(proc, "VmHWM") / 1024


def assert_gets_through(proc) -> None:
    result = storescu(proc.legit, proc.port)
    assert len(acknowledged(result.stdout + result.stderr)) == len(proc.legit), result.stderr[-2000:]


def deflate_bomb(inflated_mb: int) -> tuple[str, bytes]:
    """(SOP Instance UID, a CT dataset in Deflated Explicit VR Little Endian whose Pixel Data
    inflates to inflated_mb MB of zeros: about 1 MB on the wire per GB inflated)."""
    ds = pydicom.Dataset()
    ds.SOPClassUID = pydicom.uid.CTImageStorage
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = (
        pydicom.uid.generate_uid() for _ in range(3))
    ds.Modality, ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = "CT", 512, 512, 16, 1
    buffer = pydicom.filebase.DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(buffer, ds)
    pixels = inflated_mb * MB
    head = buffer.getvalue() + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, pixels)
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(MB)
    parts = [deflater.compress(head)] + [deflater.compress(zeros) for _ in range(inflated_mb)]
    return str(ds.SOPInstanceUID), b"".join(parts) + deflater.flush()


def test_deflate_bomb_is_refused_without_inflating_it(node):
    sop_uid, bomb = deflate_bomb(1024)
    before = peak_mb(node)
    with associate(node.port, DeflatedExplicitVRLittleEndian, source="127.0.0.2") as sock:
        sock.sendall(pdv_pdu(command(dimse.C_STORE_RQ, sop_uid=sop_uid), True, True))
        chunk = 1 * MB
        for start in range(0, len(bomb), chunk):
            sock.sendall(pdv_pdu(bomb[start:start + chunk], False, start + chunk >= len(bomb)))
        pdu_type, body = read_pdu(sock, timeout=60)
    assert pdu_type == ul.P_DATA and status_of(body) == StoreStatus.OUT_OF_RESOURCES
    print(f"deflate bomb ({len(bomb) / MB:.1f} MB -> 1 GB): peak grew {peak_mb(node) - before:.1f} MB")
    assert peak_mb(node) - before < 100, f"peak memory grew {peak_mb(node) - before:.0f} MB"
    wait_until(lambda: "inflates beyond node.max_instance_mb" in node.log(), 10, what="the refusal")
    assert_gets_through(node)


def test_declared_lengths_reserve_no_memory(node):
    """Eight associations (of the ten allowed) each declare a P-DATA-TF at the largest allowed
    PDU, 64 MB, and send 1 kB of it: memory that followed the declared length would be 512 MB."""
    before = peak_mb(node)
    socks = [associate(node.port, source=f"127.0.0.{3 + i % 2}") for i in range(8)]
    for sock in socks:
        sock.sendall(struct.pack(">BBL", ul.P_DATA, 0, MAX_PDU) + bytes(1024))
    assert_gets_through(node)
    print(f"8 x 64 MB declared: peak grew {peak_mb(node) - before:.1f} MB")
    assert peak_mb(node) - before < 100, f"peak memory grew {peak_mb(node) - before:.0f} MB"
    for sock in socks:  # and the stalled PDUs are cut at their deadline
        assert closed_by_node(sock, NETWORK_TIMEOUT_S + 10)
        sock.close()


def test_a_pdu_over_the_maximum_is_aborted_at_its_header(node):
    with associate(node.port, source="127.0.0.5") as sock:
        sock.sendall(struct.pack(">BBL", ul.P_DATA, 0, 3 * MAX_PDU))
        assert read_pdu(sock)[0] == ul.ABORT


def test_endless_command_set_is_aborted(node):
    with associate(node.port, source="127.0.0.6") as sock:
        with pytest.raises(OSError):  # the node aborts and closes long before 300 MB
            for _ in range(300 * 32):
                sock.sendall(pdv_pdu(bytes(32 * 1024), True, False))
    assert_gets_through(node)


def drip(sock, data: bytes, stop: threading.Event) -> None:
    """Send data one byte every 0.5 s until it is sent, the node closes, or stop is set."""
    for byte in data:
        if stop.wait(0.5):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def test_slow_drip_peers_neither_block_senders_nor_stay(node):
    """Five peers drip their A-ASSOCIATE-RQ, five drip a PDU inside an association (from two
    addresses): storescu's series goes in meanwhile, and every dripping peer is cut at its
    deadline (node.network_timeout_s), not held for as long as it likes."""
    stop = threading.Event()
    socks, threads = [], []
    for i in range(10):
        if i < 5:
            sock, data = connect(node.port, "127.0.0.7"), associate_rq()
        else:
            sock = associate(node.port, source="127.0.0.8")
            data = pdv_pdu(command(dimse.C_ECHO_RQ, dataset=False), True, True)
        socks.append(sock)
        threads.append(threading.Thread(target=drip, args=(sock, data, stop), daemon=True))
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        assert_gets_through(node)
        for sock in socks:
            assert closed_by_node(sock, NETWORK_TIMEOUT_S + 10), "a dripping peer was kept"
        # Nothing is cut early either: a PDU has node.network_timeout_s to arrive.
        assert time.monotonic() - started >= NETWORK_TIMEOUT_S - 0.5
    finally:
        stop.set()
        for sock in socks:
            sock.close()


def test_connection_flood_from_one_address_is_capped(node):
    threads_before = status(node, "Threads")
    socks = [connect(node.port, "127.0.0.9") for _ in range(200)]
    try:
        # Connections beyond the per-address cap are closed at accept, before a thread is made.
        closed = sum(closed_by_node(s, 2.0) for s in socks[PER_ADDRESS:])
        assert closed == 200 - PER_ADDRESS
        assert status(node, "Threads") <= threads_before + PER_ADDRESS + 2
        assert_gets_through(node)
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: "node.max_connections_per_address reached" in node.log(), 10,
               what="the refusal log line")


def test_wrong_called_ae_title_is_rejected(node):
    with connect(node.port, "127.0.0.10") as sock:
        sock.sendall(associate_rq(ExplicitVRLittleEndian, called="NOT_ME"))
        pdu_type, body = read_pdu(sock)
    assert pdu_type == ul.ASSOCIATE_RJ and body[1:] == bytes([0x01, 0x01, 0x07])
