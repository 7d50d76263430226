"""Server-side sessions: the cookie is only an id; logout and expiry end it on the server, so a
copied cookie stops working; the cookie's flags follow web.secure_cookie."""
import re

import pytest
import requests

from ichnode.config import WebConfig
from ichnode.triage.metrics import Metrics
from ichnode.web.app import build_app
from ichnode.web.server import WebServer
from ichnode.web.sessions import SessionStore

from tests.web.conftest import PASSWORD


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def serve(stores, tmp_path, users, clock=None, **web):
    config = WebConfig(enabled=True, host="127.0.0.1", port=0, users=users, **web)
    extra = {} if clock is None else {"clock": clock}
    app = build_app(config, stores.worklist, stores.outbox, Metrics(stores.jobs, stores.outbox), tmp_path / "results", **extra)
    server = WebServer(app, config).start()
    server.base = f"http://127.0.0.1:{server.port}"
    return server


def log_in(base, headers=None):
    """A requests.Session logged in as ann, and the raw Set-Cookie header of the login answer."""
    browser = requests.Session()
    page = browser.get(base + "/login", headers=headers, timeout=10).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    # The token is the cookie's value; sent by hand, as a Secure cookie stays home over http.
    answer = browser.post(base + "/login", headers=headers, allow_redirects=False, timeout=30,
                          cookies={"ichnode_login_csrf": csrf},
                          data={"username": "ann", "password": PASSWORD, "csrf": csrf, "next": "/"})
    assert answer.status_code == 303, answer.text
    return browser, answer.headers["set-cookie"]


def api_status(base, sid):
    return requests.get(base + "/api/worklist", cookies={"ichnode_session": sid}, timeout=10).status_code


def test_session_store_expires_deletes_and_caps():
    clock = Clock()
    store = SessionStore(max_age_s=60, clock=clock, per_user=2)
    first = store.create("ann")
    assert store.get(first.id) == first and store.get("forged") is None and store.get(None) is None
    clock.now += 59
    assert store.get(first.id) == first
    clock.now += 1
    assert store.get(first.id) is None and len(store) == 0  # expired here, not in the browser
    a, b, c = store.create("ann"), store.create("ann"), store.create("bob")
    d = store.create("ann")  # ann's third: her oldest makes room
    assert store.get(a.id) is None and {store.get(s.id) for s in (b, c, d)} == {b, c, d}
    store.delete(d.id)
    assert store.get(d.id) is None and store.get(b.id) == b


def test_a_copied_cookie_stops_working_at_logout(stores, tmp_path, users):
    server = serve(stores, tmp_path, users)
    try:
        browser, set_cookie = log_in(server.base)
        sid = browser.cookies["ichnode_session"]
        assert len(sid) >= 40 and "ann" not in set_cookie  # an opaque id, no signed user name
        assert api_status(server.base, sid) == 200  # the copy works while the session lives
        assert browser.post(server.base + "/logout", allow_redirects=False, timeout=10).status_code == 303
        assert api_status(server.base, sid) == 401
        page = requests.get(server.base + "/", cookies={"ichnode_session": sid}, timeout=10)
        assert page.url.endswith("/login?next=/") and "DOE" not in page.text
        assert api_status(server.base, "forged-" + sid[7:]) == 401
    finally:
        server.stop()


def test_expiry_is_enforced_by_the_server(stores, tmp_path, users):
    clock = Clock()
    server = serve(stores, tmp_path, users, clock, session_max_age_s=600)
    try:
        browser, set_cookie = log_in(server.base)
        assert "Max-Age=600" in set_cookie
        sid = browser.cookies["ichnode_session"]
        clock.now += 599
        assert api_status(server.base, sid) == 200
        clock.now += 1
        assert api_status(server.base, sid) == 401  # a cookie kept past Max-Age is no use
    finally:
        server.stop()


def test_each_login_gets_a_new_session_id(stores, tmp_path, users):
    server = serve(stores, tmp_path, users)
    try:
        browser, _ = log_in(server.base)
        before = browser.cookies["ichnode_session"]
        page = browser.get(server.base + "/login", timeout=10).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        browser.post(server.base + "/login", allow_redirects=False, timeout=30,
                     data={"username": "ann", "password": PASSWORD, "csrf": csrf})
        after = browser.cookies["ichnode_session"]
        assert after != before and api_status(server.base, before) == 401
        assert api_status(server.base, after) == 200
    finally:
        server.stop()


def test_login_needs_the_form_token_of_its_cookie(stores, tmp_path, users):
    server = serve(stores, tmp_path, users)
    try:
        form = {"username": "ann", "password": PASSWORD, "csrf": "x" * 32, "next": "/"}
        answer = requests.post(server.base + "/login", data=form, allow_redirects=False, timeout=30)
        assert answer.status_code == 403 and "ichnode_session" not in answer.cookies
        for token in ("y" * 32, "\u00e9" * 32):  # another token; one compare_digest cannot take as str
            answer = requests.post(server.base + "/login", data={**form, "csrf": token},
                                   allow_redirects=False, timeout=30,
                                   cookies={"ichnode_login_csrf": "x" * 32})
            assert answer.status_code == 403 and "ichnode_session" not in answer.cookies
    finally:
        server.stop()


@pytest.mark.parametrize("setting, forwarded, secure", [
    ("auto", None, False),  # plain http straight to the node
    ("auto", "https", True),  # a TLS proxy on the same host (uvicorn trusts 127.0.0.1)
    ("always", None, True),  # a TLS proxy elsewhere, whose X-Forwarded-Proto is not trusted
    ("never", "https", False),
])
def test_secure_cookie_setting(stores, tmp_path, users, setting, forwarded, secure):
    server = serve(stores, tmp_path, users, secure_cookie=setting)
    try:
        headers = {"X-Forwarded-Proto": forwarded} if forwarded else None
        _, set_cookie = log_in(server.base, headers)
        session_cookie = [c for c in set_cookie.split(", ") if c.startswith("ichnode_session=")][0]
        flags = {flag.strip().lower() for flag in session_cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert ("secure" in flags) is secure
    finally:
        server.stop()
