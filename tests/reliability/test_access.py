"""Access control and hostile peers: source-address allow-list, calling AE allow-list, DICOM TLS
(with mutual TLS, tested with DCMTK storescu +tls and certificates made here with openssl), the
association limit, and the timeouts that drop idle or stalled peers."""
from __future__ import annotations

import socket
import struct
import subprocess

import pytest

from ichnode.audit import read_audit
from ichnode.config import load_config
from ichnode.dicom.access import AddressFilter
from ichnode.errors import ConfigError
from ichnode.synth import SynthSpec, write_series

from tests.helpers import free_port, require_tool, wait_until, write_config
from tests.reliability.peers import (association, echo_ok, files_under, serve_args, start_node,
                                     storescu, wait_serving)


def echoscu(port: int, *extra: str, aet: str = "SCANNER") -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("echoscu"), "-aet", aet, "-aec", "ICHNODE", "-to", "10",
                           *extra, "127.0.0.1", str(port)], capture_output=True, text=True, timeout=60)


def closed_by_peer(sock: socket.socket, timeout: float = 20) -> bool:
    """Read until the node closes the connection (True) or `timeout` passes in silence (False)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# --- source addresses and calling AE titles ------------------------------------------------------

def test_source_address_allow_list(tmp_path, processes):
    port = free_port()
    config = write_config(tmp_path / "ichnode.yaml", tmp_path / "var", port, [],
                          node={"allowed_addresses": ["10.20.0.0/16", "fd00::/8"]})
    node = processes(serve_args(config), tmp_path / "serve.log")
    wait_until(lambda: "node_started" in node.log() or node.proc.poll() is not None, 60,
               what="ichnode serve")
    refused = echoscu(port)
    assert refused.returncode != 0
    wait_until(lambda: '"connection_refused"' in node.log(), 10, what="the refusal log line")
    line = next(li for li in node.log().splitlines() if '"connection_refused"' in li)
    assert '"address": "127.0.0.1"' in line and "allowed_addresses" in line
    node.stop()
    audit = read_audit(tmp_path / "var" / "audit.jsonl")
    assert any(r["event"] == "connection_refused" and r["address"] == "127.0.0.1" for r in audit)
    assert not any(r["event"] == "association_accepted" for r in audit)

    allowed = start_node(tmp_path / "allowed", **{"node.allowed_addresses": ["127.0.0.0/8"]})
    try:
        assert echoscu(allowed.port).returncode == 0
    finally:
        allowed.stop()


def test_address_filter_rules():
    f = AddressFilter(["10.20.0.0/16", "fd00::/8", "192.0.2.7"])
    assert f.allowed("10.20.3.4") and f.allowed("::ffff:10.20.3.4") and f.allowed("fd12::1")
    assert f.allowed("192.0.2.7") and not f.allowed("192.0.2.8")
    assert not f.allowed("127.0.0.1") and not f.allowed("::1") and not f.allowed("garbage")
    assert AddressFilter([]).allowed("203.0.113.9")  # empty: any address


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-an-address", "127.0.0.1/8/1"])
def test_bad_cidr_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"node\.allowed_addresses\[0\]"):
        load_config(None, overrides={"node.allowed_addresses": [value]})


def test_calling_ae_allow_list(tmp_path):
    node = start_node(tmp_path, **{"node.allowed_calling_aets": ["CT_SCANNER1"]})
    try:
        assert echoscu(node.port, aet="INTRUDER").returncode != 0
        assert echoscu(node.port, aet="CT_SCANNER1").returncode == 0
    finally:
        node.stop()
    events = [(r["event"], r["calling_aet"]) for r in read_audit(node.config.data_dir / "audit.jsonl")
              if r["event"].startswith("association_") and r["event"] != "association_closed"]
    assert events == [("association_rejected", "INTRUDER"), ("association_accepted", "CT_SCANNER1")]


# --- association limit and timeouts ----------------------------------------------------------------

def test_max_associations(tmp_path):
    node = start_node(tmp_path, **{"node.max_associations": 2})
    try:
        with association(node.port) as first, association(node.port) as second:
            assert first.is_established and second.is_established
            with association(node.port) as third:
                assert third.is_rejected  # A-ASSOCIATE-RJ: local limit exceeded
        # Both released: new associations are accepted again.
        wait_until(lambda: echo_ok(node.port), 20, what="an association after the others ended")
    finally:
        node.stop()


def test_idle_association_and_silent_or_stalled_peers_are_dropped(tmp_path):
    node = start_node(tmp_path, **{"node.network_timeout_s": 1.5})
    try:
        # An established association that says nothing more is aborted by the node.
        with association(node.port) as idle:
            assert idle.is_established
            wait_until(lambda: not idle.is_established, 20, what="the idle association to be dropped")
            assert idle.is_aborted
        # A TCP connection that never sends an A-ASSOCIATE-RQ.
        with socket.create_connection(("127.0.0.1", node.port)) as silent:
            assert closed_by_peer(silent)
        # A PDU header announcing 2 GB that never come (the reader would wait forever).
        with socket.create_connection(("127.0.0.1", node.port)) as stalled:
            stalled.sendall(struct.pack(">BBL", 0x01, 0, 0x7FFFFFFF) + b"\x00" * 64)
            assert closed_by_peer(stalled)
        assert echo_ok(node.port)
    finally:
        node.stop()


# --- DICOM TLS -------------------------------------------------------------------------------------

def _openssl(*args, cwd):
    subprocess.run([require_tool("openssl"), *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA, a server and a client certificate it signed, and a rogue self-signed client."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=ichnode test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN=ichnode test {name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue.key", "-out",
             "rogue.crt", "-days", "2", "-subj", "/CN=rogue", cwd=d)
    return d


def test_dicom_tls_with_client_certificates(tmp_path, processes, pki):
    series = tmp_path / "series"
    write_series(series, SynthSpec(subtype="none", matrix=64, seed=95))
    files = sorted(series.glob("CT*.dcm"))[:3]
    port = free_port()
    config = write_config(tmp_path / "ichnode.yaml", tmp_path / "var", port, [],
                          tls={"cert": str(pki / "server.crt"), "key": str(pki / "server.key"),
                               "ca": str(pki / "ca.crt"), "handshake_timeout_s": 2.0},
                          assembly={"quiet_seconds": 300})
    node = processes(serve_args(config), tmp_path / "serve.log")
    wait_serving(node, port)
    tls = ["+tls", str(pki / "client.key"), str(pki / "client.crt"), "+cf", str(pki / "ca.crt")]

    # A peer that connects and never starts its handshake must not hold up anyone else.
    with socket.create_connection(("127.0.0.1", port)) as silent:
        ok = storescu(files, port, *tls)
        assert ok.returncode == 0, ok.stdout[-1500:] + ok.stderr[-1500:]
        assert ok.stderr.count("Received Store Response (Success)") == 3
        assert closed_by_peer(silent)  # dropped after tls.handshake_timeout_s

    plain = storescu(files[:1], port)  # no TLS at all
    assert plain.returncode != 0
    rogue = storescu(files[:1], port, "+tls", str(pki / "rogue.key"), str(pki / "rogue.crt"),
                     "+cf", str(pki / "ca.crt"))  # a certificate the node's CA did not sign
    assert rogue.returncode != 0 and "Success" not in rogue.stdout + rogue.stderr
    node.stop()
    assert len(files_under(tmp_path / "var" / "spool", "*.dcm")) == 3
    audit = read_audit(tmp_path / "var" / "audit.jsonl")
    accepted = [r for r in audit if r["event"] == "association_accepted"]
    assert len(accepted) == 1 and accepted[0]["tls"] is True
    handshakes = [r for r in audit if r["event"] == "connection_refused"]
    assert len(handshakes) >= 3 and all("TLS handshake failed" in r["reason"] for r in handshakes)


def test_client_certificate_is_tied_to_its_ae_titles(tmp_path, processes, pki):
    """tls.certificate_aets: a valid client certificate may only call as the AE titles it is
    mapped to; another title with the same certificate is rejected on the A-ASSOCIATE-RQ."""
    write_series(tmp_path / "series", SynthSpec(subtype="none", matrix=64, seed=96))
    files = sorted((tmp_path / "series").glob("CT*.dcm"))[:1]
    port = free_port()
    config = write_config(tmp_path / "ichnode.yaml", tmp_path / "var", port, [],
                          tls={"cert": str(pki / "server.crt"), "key": str(pki / "server.key"),
                               "ca": str(pki / "ca.crt"),
                               "certificate_aets": [{"common_name": "ichnode test client",
                                                     "ae_titles": ["CT1"]}]},
                          assembly={"quiet_seconds": 300})
    node = processes(serve_args(config), tmp_path / "serve.log")
    wait_serving(node, port)
    tls = ["+tls", str(pki / "client.key"), str(pki / "client.crt"), "+cf", str(pki / "ca.crt")]
    assert storescu(files, port, *tls, aet="CT1").returncode == 0
    other = storescu(files, port, *tls, aet="CT2")
    assert other.returncode != 0 and "Association Rejected" in other.stdout + other.stderr
    node.stop()
    rejected = [r for r in read_audit(tmp_path / "var" / "audit.jsonl") if r["event"] == "association_rejected"]
    assert len(rejected) == 1 and "client certificate" in rejected[0]["reason"]


def test_tls_config_is_validated(tmp_path, pki):
    with pytest.raises(ConfigError, match=r"tls\.key"):
        load_config(None, overrides={"tls.cert": str(pki / "server.crt")})
    with pytest.raises(ConfigError, match=r"tls\.cert.*no such file"):
        load_config(None, overrides={"tls.cert": str(tmp_path / "missing.crt"),
                                     "tls.key": str(pki / "server.key")})
