"""The worklist web app over real HTTP (uvicorn thread): login, pages, JSON API validated against
its own OpenAPI document, CSRF guard, Basic auth, images, /metrics, TLS."""
import base64
import http.cookiejar
import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import jsonschema
import pytest

from ichnode.config import WebConfig
from ichnode.triage.metrics import Metrics
from ichnode.web.app import build_app
from ichnode.web.auth import hash_password, verify_password
from ichnode.web.server import WebServer

from tests.web.conftest import PASSWORD


def start(stores, tmp_path, users, **web):
    config = WebConfig(enabled=True, host="127.0.0.1", port=0, users=users, **web)
    app = build_app(config, stores.worklist, stores.outbox, Metrics(stores.jobs, stores.outbox), tmp_path / "results")
    return WebServer(app, config).start()


class Client:
    def __init__(self, base, context=None):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        handlers = [urllib.request.HTTPCookieProcessor(self.jar)]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)

    def request(self, path, data=None, headers=None, method=None):
        body = data if data is None or isinstance(data, bytes) else urllib.parse.urlencode(data).encode()
        req = urllib.request.Request(self.base + path, data=body, headers=headers or {}, method=method)
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, r.headers, r.read().decode(errors="replace"), r.geturl()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode(), e.geturl()

    def login(self, user="ann", password=PASSWORD):
        _, _, page, _ = self.request("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        return self.request("/login", {"username": user, "password": password, "csrf": csrf, "next": "/"})


def validator(spec, name):
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_password_hashes_are_salted_and_verified():
    # A password with a space: it cannot turn up inside the base64 of a hash by chance ("pw" did).
    a, b = hash_password("p w"), hash_password("p w")
    assert a != b and a.startswith("scrypt$") and "p w" not in a
    assert verify_password("p w", a) and not verify_password("p W", a)
    assert not verify_password("p w", "scrypt$broken") and not verify_password("p w", "md5$x")


def test_login_worklist_api_and_openapi(stores, tmp_path, users):
    now = time.time()
    routine = stores.job(priority="routine", priority_rank=3, patient_name="ROE^RICHARD",
                         arrived=now - 20)
    critical = stores.job(arrived=now - 10)
    thumb = tmp_path / "results" / str(critical) / "triage" / "thumbnail.png"
    thumb.parent.mkdir(parents=True)
    thumb.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    stores.worklist.upsert(critical, thumbnail="thumbnail.png")
    server = start(stores, tmp_path, users)
    try:
        anonymous = Client(f"http://127.0.0.1:{server.port}")
        status, headers, body, _ = anonymous.request("/api/worklist")
        assert status == 401 and json.loads(body) == {"error": "authentication required"}
        status, _, page, url = anonymous.request("/")
        assert url.endswith("/login?next=/") and "DOE" not in page
        assert anonymous.request("/images/%d/thumbnail.png" % critical)[0] == 401
        assert anonymous.request("/fragments/worklist")[0] == 401

        spec = json.loads(anonymous.request("/api/openapi.json")[2])
        assert spec["openapi"].startswith("3.1")
        assert {"/api/worklist", "/api/worklist/{job}", "/api/worklist/{job}/{action}"} <= set(spec["paths"])
        assert "post" in spec["paths"]["/api/worklist/{job}/{action}"]
        validator(spec, "Error").validate(json.loads(body))

        client = Client(anonymous.base)
        status, _, page, _ = client.login(password="wrong")
        assert status == 401 and "Wrong user name or password" in page
        status, headers, page, url = client.login()
        assert status == 200 and url.endswith("/")
        assert headers["Cache-Control"] == "no-store" and headers["X-Frame-Options"] == "DENY"
        assert "DOE, JANE" in page and "ACC42" in page and "not for diagnostic use" in page
        assert page.index('data-job="%d"' % critical) < page.index('data-job="%d"' % routine)

        worklist = json.loads(client.request("/api/worklist")[2])
        validator(spec, "Worklist").validate(worklist)
        assert [i["job"] for i in worklist["items"]] == [critical, routine]
        assert worklist["items"][0]["thumbnail_url"] == f"/images/{critical}/thumbnail.png"
        status, headers, png, _ = client.request(worklist["items"][0]["thumbnail_url"])
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert client.request(f"/images/{critical}/..%2F..%2Fichnode.sqlite")[0] == 404

        item = json.loads(client.request(f"/api/worklist/{critical}")[2])
        validator(spec, "WorklistItem").validate(item)
        assert item["patient_id"] == "PID-123" and item["notifications"] == []
        status, _, body, _ = client.request("/api/worklist/999")
        assert status == 404
        validator(spec, "Error").validate(json.loads(body))

        # A cookie-authenticated POST must not look like a plain (cross-site) form.
        path = f"/api/worklist/{critical}/acknowledge"
        assert client.request(path, b"", method="POST")[0] == 403
        status, _, body, _ = client.request(path, b"{}", {"Content-Type": "application/json"})
        acked = json.loads(body)
        validator(spec, "WorklistItem").validate(acked)
        assert status == 200 and acked["acknowledged"]["by"] == "ann"

        # Scripts use HTTP Basic with the same accounts.
        basic = Client(anonymous.base)
        token = base64.b64encode(f"ann:{PASSWORD}".encode()).decode()
        status, _, body, _ = basic.request(f"/api/worklist/{routine}/dismiss", b"",
                                           {"Authorization": f"Basic {token}"}, method="POST")
        assert status == 200 and json.loads(body)["dismissed"]["by"] == "ann"
        bad = base64.b64encode(b"ann:nope").decode()
        assert basic.request("/api/worklist", headers={"Authorization": f"Basic {bad}"})[0] == 401
        remaining = json.loads(client.request("/api/worklist")[2])["items"]
        assert [i["job"] for i in remaining] == [critical]

        assert anonymous.request("/metrics")[0] == 401
        status, headers, metrics, _ = client.request("/metrics")
        assert status == 200 and "ichnode_stage_seconds_bucket" in metrics and "DOE" not in metrics

        assert client.request("/logout", b"", method="POST")[3].endswith("/login")
        assert client.request("/api/worklist")[0] == 401
    finally:
        server.stop()


def test_tls(stores, tmp_path, users):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (Debian package openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    stores.job()
    server = start(stores, tmp_path, users, tls_cert=cert, tls_key=key)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        client = Client(f"https://127.0.0.1:{server.port}", context)
        status, _, page, _ = client.login()
        assert status == 200 and "ACC42" in page
        (cookie,) = [c for c in client.jar if c.name == "ichnode_session"]
        assert cookie.secure
    finally:
        server.stop()
