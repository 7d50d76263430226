"""Outbound TLS: results to a DCMTK storescp that speaks only DICOM TLS (DCMTK 3.6.7 built with
OpenSSL), HL7 ORU^R01 to a TLS MLLP listener. A throwaway PKI made with the openssl command: a CA
the node trusts, a server and a client certificate it signed, and a second ("rogue") CA whose
server certificate the node must refuse. Refusals are retried like any other delivery failure and
mark nothing sent."""
from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
import yaml

from ichnode.audit import read_audit
from ichnode.config import ClientTls, DimseDestination, MllpConfig, NotifyConfig, load_config
from ichnode.dicom.sender import describe, send
from ichnode.errors import ConfigError, SendError
from ichnode.store.jobs import JobState
from ichnode.synth import SynthSpec, write_series
from tests.helpers import free_port, port_open, wait_until
from tests.reliability.peers import start_node, storescu
from tests.triage.mllp import MllpListener
from tests.triage.stores import Notifying, Stores

STORESCP = "/usr/bin/storescp"  # DCMTK's, not the venv's pynetdicom storescp


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=ichnode test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)


def _leaf(folder: Path, name: str, ca: str, cn: str) -> None:
    (folder / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                        "basicConstraints=CA:FALSE\n"
                                        "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={cn}", cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
             cwd=folder)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("pki")
    _ca(folder, "ca")
    _ca(folder, "rogue-ca")
    _leaf(folder, "server", "ca", "localhost")
    _leaf(folder, "client", "ca", "ICHNODE")
    _leaf(folder, "rogue-server", "rogue-ca", "localhost")
    return folder


def _trusting(pki: Path, client_cert: bool = True, **kw) -> ClientTls:
    if client_cert:
        kw.update(cert=pki / "client.pem", key=pki / "client.key")
    return ClientTls(ca=pki / "ca.pem", **kw)


def _tls_storescp(processes, pki: Path, server: str, folder: Path, port: int, *verify: str):
    if not Path(STORESCP).is_file():
        pytest.skip("DCMTK storescp is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    proc = processes([STORESCP, "-v", "+tls", str(pki / f"{server}.key"), str(pki / f"{server}.pem"),
                      "+cf", str(pki / "ca.pem"), *verify, "--aetitle", "DEST",
                      "--output-directory", str(folder), "--accept-all", str(port)],
                     folder.parent / f"storescp-{port}.log")
    wait_until(lambda: port_open(port) or not proc.alive(), 20, what=f"storescp on port {port}")
    assert proc.alive(), proc.log()
    return proc


def _instances(tmp_path: Path, count: int = 2):
    folder = tmp_path / "series"
    write_series(folder, SynthSpec(subtype="iph", matrix=64, seed=7))
    return [describe(p) for p in sorted(folder.glob("CT*.dcm"))[:count]]


def _received(folder: Path) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for p in folder.iterdir() if p.is_file()}


def test_results_arrive_over_mutual_tls_and_only_over_it(tmp_path, pki, processes):
    port, received = free_port(), tmp_path / "received"
    # -rc: storescp requires and verifies a client certificate signed by ca.pem.
    scp = _tls_storescp(processes, pki, "server", received, port, "-rc")
    items, sent = _instances(tmp_path), []

    def deliver(tls):
        send(items, DimseDestination("pacs", "DEST", "127.0.0.1", port, tls=tls), calling_aet="ICHNODE",
             timeout_s=10, on_sent=sent.append)

    with pytest.raises(SendError, match=r"127\.0\.0\.1:\d+\) rejected"):
        deliver(None)  # plain DICOM to a TLS-only port
    wait_until(lambda: "wrong version number" in scp.log(), 10, what="storescp to see plain TCP")
    with pytest.raises(SendError, match="over TLS.*client certificate"):
        deliver(_trusting(pki, client_cert=False))
    wait_until(lambda: "peer did not return a certificate" in scp.log(), 10,
               what="storescp to refuse a client without a certificate")
    with pytest.raises(SendError, match="certificate verify failed: Hostname mismatch"):
        deliver(_trusting(pki, server_name="pacs.elsewhere.example"))
    assert sent == [] and _received(received) == set()

    deliver(_trusting(pki))
    assert sent == [i.sop_uid for i in items]
    assert _received(received) == set(sent)
    assert "Association Acknowledged" in scp.log()


def test_peer_certificate_from_another_ca_is_refused_retried_and_nothing_marked_sent(
        tmp_path, pki, processes):
    port, received = free_port(), tmp_path / "received"
    # A peer that would accept anyone (-ic) but shows a certificate the node does not trust.
    scp = _tls_storescp(processes, pki, "rogue-server", received, port, "-ic")
    dest = {"name": "pacs", "ae_title": "DEST", "host": "127.0.0.1", "port": port,
            "tls": {"ca": str(pki / "ca.pem"), "cert": str(pki / "client.pem"),
                    "key": str(pki / "client.key")}}
    node = start_node(tmp_path, [dest], **{"sender.backoff_initial_s": 0.1,
                                           "sender.backoff_max_s": 0.2, "sender.max_attempts": 2})
    try:
        folder = tmp_path / "in"
        truth = write_series(folder, SynthSpec(subtype="iph", matrix=128, seed=64))
        result = storescu(sorted(folder.glob("CT*.dcm")), node.port)
        assert result.returncode == 0, result.stdout[-1500:]

        def failed_job():
            for job in node.store.jobs():
                if node.store.series(job.series_key).series_uid == truth["series_uid"] and \
                        job.state is JobState.FAILED:
                    return job
            return None

        job = wait_until(failed_job, 120, what="the job to fail after sender.max_attempts")
        owed = node.outbox.deliveries(job.id)
    finally:
        node.stop()
    assert job.results and len(owed) == len(job.results)
    assert {(d.state, d.attempts) for d in owed} == {("failed", 2)}  # tried, backed off, tried again, gave up
    assert "destination pacs" in job.error and "over TLS" in job.error
    assert "certificate verify failed" in job.error
    assert _received(received) == set()
    failures = [r for r in read_audit(tmp_path / "var" / "audit.jsonl") if r["event"] == "send_failed"]
    assert len(failures) == 2 and all("certificate verify failed" in r["error"] for r in failures)
    assert "Association Received" not in scp.log()  # no DICOM ever crossed


def TlsMllpListener(pki: Path, server: str = "server") -> MllpListener:
    """MLLP over TLS: requires a client certificate signed by ca.pem, answers AA to each message."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / f"{server}.pem", pki / f"{server}.key")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return MllpListener(tls=context)


@pytest.fixture
def stores(tmp_path):
    s = Stores(tmp_path / "ichnode.sqlite")
    yield s
    s.close()


def _notifier(stores, port: int, tls: ClientTls) -> Notifying:
    mllp = MllpConfig(host="127.0.0.1", port=port, receiving_application="RIS", tls=tls)
    return Notifying(stores, NotifyConfig(mllp=mllp, backoff_initial_s=0.05, backoff_max_s=0.2, timeout_s=5))


def test_oru_over_mllp_tls_with_client_certificate_is_acknowledged(stores, pki):
    job = stores.job(patient_name="MÜLLER^JÜRGEN")
    with TlsMllpListener(pki) as listener:
        n = _notifier(stores, listener.port, _trusting(pki))
        assert n.enqueue(job) == 1 and n.run_due() == 1
    (row,) = stores.outbox.notifications(job)
    assert (row.state, row.ack_code, row.attempts) == ("sent", "AA", 1)
    (message,) = listener.messages
    assert str(message.segment("MSH")(10)) == row.control_id
    assert str(message.segment("PID")(5)(1)(1)) == "MÜLLER"
    (version, client), = listener.sessions
    assert version in ("TLSv1.2", "TLSv1.3") and client == "ICHNODE"


def test_mllp_listener_with_untrusted_certificate_is_refused_and_retried(stores, pki):
    job = stores.job()
    with TlsMllpListener(pki, server="rogue-server") as listener:
        n = _notifier(stores, listener.port, _trusting(pki))
        n.enqueue(job)
        tried = time.time()
        n.run_due()
        wait_until(lambda: listener.handshake_errors, 10, what="the listener to see the refusal")
    (row,) = stores.outbox.notifications(job)
    assert (row.state, row.attempts) == ("pending", 1)  # retried later, per notify.*
    assert row.next_attempt > tried and row.sent_at is None
    assert "over TLS" in row.error and "certificate verify failed" in row.error
    assert listener.messages == []


def _load(tmp_path, section: str, tls: dict):
    path = tmp_path / "node.yaml"
    if section == "destination":
        raw = {"destinations": [{"name": "pacs", "ae_title": "PACS", "host": "pacs", "port": 2762,
                                 "tls": tls}]}
    else:
        raw = {"notify": {"mllp": {"host": "ris", "port": 2575, "tls": tls}}}
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def test_tls_blocks_load_and_bad_ones_name_file_key_and_value(tmp_path, pki):
    ok = {"ca": str(pki / "ca.pem"), "cert": str(pki / "client.pem"), "key": str(pki / "client.key")}
    dest = _load(tmp_path, "destination", ok).destinations[0]
    assert dest.tls == ClientTls(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key")
    assert dest.tls.verify is True and _load(tmp_path, "mllp", {}).notify.mllp.tls == ClientTls()
    cases = [
        ("destination", {"cert": ok["cert"]}, "destinations[0].tls.key", "given together"),
        ("destination", {"ca": str(tmp_path / "nope.pem")}, "destinations[0].tls.ca", "no such file"),
        ("destination", {"ca": ok["cert"], "verify": False}, "destinations[0].tls.ca", "no effect"),
        ("destination", {"ca": ok["key"]}, "destinations[0].tls.ca", "not a PEM CA"),
        ("mllp", {"cert": ok["cert"], "key": str(pki / "rogue-server.key")}, "notify.mllp.tls.cert",
         "do not load together"),
        ("mllp", {"server_name": " "}, "notify.mllp.tls.server_name", "must not be empty"),
    ]
    for section, tls, key, why in cases:
        with pytest.raises(ConfigError) as err:
            _load(tmp_path, section, tls)
        text = str(err.value)
        assert text.startswith(str(tmp_path / "node.yaml")) and f"{key}:" in text and why in text, text
    stow = tmp_path / "stow.yaml"
    stow.write_text("destinations: [{name: a, kind: stow, url: 'https://pacs/dicom-web', tls: {}}]\n")
    with pytest.raises(ConfigError, match=r"destinations\[0\]\.tls: a stow destination gets TLS"):
        load_config(stow)
