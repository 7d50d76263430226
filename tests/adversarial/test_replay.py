"""Real senders' PDUs, recorded and replayed: what DCMTK storescu, pynetdicom and Orthanc (the
Debian package, routing as a PACS does) put on the wire
is captured through a proxy on its way to one node, then replayed byte for byte to a fresh node,
which must store the same instances and answer every C-STORE with Success. A change to the
acceptor that breaks a real sender's framing (PDU splits, PDV fragmentation, release) fails here."""
from __future__ import annotations

import json
import socket
import struct
import threading

import pydicom
import pytest

from ichnode.dicom import ul
from ichnode.synth import SynthSpec, write_series

from tests.orthanc_peer import Orthanc, orthanc_binary
from tests.rawpeer import status_of
from tests.reliability.peers import acknowledged, association, start_node, storescu


class RecordingProxy:
    """Forwards one connection at a time to target_port and keeps what the client sent."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.recordings: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            sent = bytearray()
            back = threading.Thread(target=_pump, args=(upstream, client, None), daemon=True)
            back.start()
            _pump(client, upstream, sent)
            back.join(timeout=30)
            self.recordings.append(bytes(sent))
            client.close()
            upstream.close()

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket, keep: bytearray | None) -> None:
    try:
        while data := source.recv(1 << 16):
            if keep is not None:
                keep += data
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def replay(port: int, recording: bytes) -> list[tuple[int, bytes]]:
    """Send a recorded client stream to the node and return the PDUs it answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(recording)
    answer = bytearray()
    while data := sock.recv(1 << 16):
        answer += data
    sock.close()
    pdus, offset = [], 0
    while offset < len(answer):
        pdu_type, _, length = struct.unpack_from(">BBL", answer, offset)
        pdus.append((pdu_type, bytes(answer[offset + 6:offset + 6 + length])))
        offset += 6 + length
    return pdus


@pytest.fixture
def series(tmp_path):
    truth = write_series(tmp_path / "series", SynthSpec(subtype="none", matrix=64, seed=21))
    return [tmp_path / "series" / f for f in truth["files"]][:12]


def send_with_storescu(port, files, workdir):
    result = storescu(files, port)
    assert len(acknowledged(result.stdout + result.stderr)) == len(files)


def send_with_pynetdicom(port, files, workdir):
    with association(port) as assoc:
        assert all(assoc.send_c_store(pydicom.dcmread(f)).Status == 0 for f in files)


def send_with_orthanc(port, files, workdir):
    if orthanc_binary() is None:
        pytest.skip("Orthanc is not installed (Debian package orthanc; scripts/setup --test installs it)")
    pacs = Orthanc(workdir / "orthanc", modalities={"node": ("ICHNODE", "127.0.0.1", port)}).start()
    try:
        study = [pacs.upload(f) for f in files][0]["ParentStudy"]
        pacs.post("/modalities/node/store", json.dumps({"Resources": [study], "Synchronous": True}).encode(),
                  "application/json")
    finally:
        pacs.stop()


@pytest.mark.parametrize("sender", [send_with_storescu, send_with_pynetdicom, send_with_orthanc])
def test_recorded_sender_replays_to_the_same_instances(tmp_path, series, sender):
    recorder = start_node(tmp_path / "recorder")
    proxy = RecordingProxy(recorder.port)
    try:
        sender(proxy.port, series, tmp_path)
    finally:
        proxy.close()
        recorder.stop()
    (recording,) = [r for r in proxy.recordings if r[:1] == bytes([ul.ASSOCIATE_RQ])]
    fresh = start_node(tmp_path / "fresh")
    try:
        pdus = replay(fresh.port, recording)
        stored = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in series}
        assert all(fresh.store.instance_path(uid) for uid in stored)
    finally:
        fresh.stop()
    assert pdus[0][0] == ul.ASSOCIATE_AC and pdus[-1] == (ul.RELEASE_RP, b"\x00" * 4)
    statuses = [status_of(body) for pdu_type, body in pdus if pdu_type == ul.P_DATA]
    assert statuses == [0x0000] * len(series)
