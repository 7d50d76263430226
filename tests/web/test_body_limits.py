"""Request bodies are limited while they stream in: a declared length over the limit is refused
before any body is sent, a chunked body as soon as it passes the limit; the answer (413) comes
while the client still holds the rest, so the node never waits for or buffers it."""
from __future__ import annotations

import base64
import socket

import pydicom
import pytest
import requests

from ichnode.synth import SynthSpec, write_series
from ichnode.web.auth import hash_password
from ichnode.web.limits import FORM_MAX_BYTES

from tests.reliability.peers import start_node
from tests.web.conftest import PASSWORD
from tests.web.test_api import start
from tests.web.test_stow_input import multipart

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
BASIC = ("ann", PASSWORD)
DICOM_MULTIPART = 'multipart/related; type="application/dicom"; boundary=ichnode-test'


def raw_post(port: int, path: str, headers: dict, chunks=()) -> int:
    """POST over a plain socket: the headers, then the given chunks (never a body's end); the
    status of the answer, which must come without the rest of the body."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the node may close on us mid-send, having answered
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)  # a timeout here: the node waited for the rest
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1])


def chunked(total: int, size: int = 16 * 1024):
    """`total` bytes as HTTP/1.1 chunks, without the closing zero-length chunk."""
    for _ in range(-(-total // size)):
        yield b"%x\r\n" % size + b"x" * size + b"\r\n"


@pytest.fixture
def web(stores, tmp_path, users):
    server = start(stores, tmp_path, users)
    yield server
    server.stop()


def test_a_huge_login_body_is_refused_before_it_is_sent(web):
    headers = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(100 * 2**20)}
    assert raw_post(web.port, "/login", headers) == 413


def test_a_chunked_login_body_is_cut_off_at_the_limit(web):
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Transfer-Encoding": "chunked"}
    assert raw_post(web.port, "/login", headers, chunked(FORM_MAX_BYTES + 32 * 1024)) == 413


def test_the_api_has_the_form_limit_too(web):
    headers = {"Content-Type": "application/json", "Content-Length": str(FORM_MAX_BYTES + 1)}
    assert raw_post(web.port, "/api/worklist/1/acknowledge", headers) == 413


def test_login_takes_only_its_url_encoded_form(web):
    answer = requests.post(f"http://127.0.0.1:{web.port}/login", timeout=10,
                           files={"username": ("u", b"ann"), "password": ("p", b"x")})
    assert answer.status_code == 415


@pytest.fixture
def node(tmp_path):
    node = start_node(tmp_path, **{
        "web.enabled": True, "web.port": 0, "web.stow_max_mb": 1,
        "web.users": [{"name": "ann", "password_hash": hash_password(PASSWORD)}]})
    node.base = f"http://127.0.0.1:{node.web.port}"
    yield node
    node.stop()


def test_stow_bodies_over_web_stow_max_mb_are_refused_while_streaming(node, tmp_path):
    port = node.web.port
    declared = {"Content-Type": DICOM_MULTIPART, "Content-Length": str(100 * 2**20)}
    assert raw_post(port, "/dicomweb/studies", declared) == 413
    # No Content-Length: 1 MB + 64 KB of a body that would go on for ever.
    basic = "Basic " + base64.b64encode(":".join(BASIC).encode()).decode()
    streamed = {"Content-Type": DICOM_MULTIPART, "Transfer-Encoding": "chunked", "Authorization": basic}
    assert raw_post(port, "/dicomweb/studies", streamed, chunked(2**20 + 64 * 1024)) == 413

    # Under the limit, a chunked body is taken as ever.
    truth = write_series(tmp_path / "series", SynthSpec(subtype="none", matrix=64, seed=13))
    instance = (tmp_path / "series" / truth["files"][0]).read_bytes()
    body, content_type = multipart(instance)
    assert len(body) < 2**20
    answer = requests.post(f"{node.base}/dicomweb/studies", data=iter([body[:1000], body[1000:]]),
                           auth=BASIC, headers={"Content-Type": content_type}, timeout=30)
    assert answer.status_code == 200, answer.text
    uid = pydicom.dcmread(tmp_path / "series" / truth["files"][0]).SOPInstanceUID
    assert answer.json()["00081199"]["Value"][0]["00081155"]["Value"] == [uid]
