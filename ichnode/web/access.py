"""Who is asking: a server-side session (cookie), HTTP Basic with a `web.users` account (scripts),
or, for /metrics only, the `web.metrics_token` bearer (a Prometheus scraper).

Every password check goes through the login throttle (throttle.py), the attempt counted before the
hash. A Basic credential that was right is remembered for BASIC_REMEMBER_S (by an HMAC under a
per-process key, never the password itself), so a script's requests do not each cost a scrypt hash
or a throttle slot, and a guesser locking the account does not stop the script.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from typing import Callable

from starlette.requests import Request

from ichnode.log import get_logger
from ichnode.web import cookies
from ichnode.web.auth import check_login
from ichnode.web.sessions import Session, SessionStore
from ichnode.web.throttle import LoginThrottle

log = get_logger("ichnode.web")
BASIC_REMEMBER_S = 300.0


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        name, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return name, password


class Auth:
    def __init__(self, users: dict[str, str], throttle: LoginThrottle, sessions: SessionStore,
                 metrics_token: str | None = None, clock: Callable[[], float] = time.monotonic):
        self.users, self.throttle, self.sessions = users, throttle, sessions
        self.metrics_token, self.clock = metrics_token, clock
        self._key = secrets.token_bytes(32)
        self._remembered: dict[bytes, float] = {}  # HMAC of a right name:password -> until
        self._lock = threading.Lock()

    def login(self, name: str, password: str, address: str, how: str) -> bool:
        """The throttled password check (blocking: run it off the event loop); raises Throttled."""
        attempt = self.throttle.reserve(name, address)
        if check_login(self.users, name, password):
            self.throttle.succeeded(attempt)
            return True
        log.warning("login_failed", how=how, address=address)
        return False

    def session(self, request: Request) -> Session | None:
        """The request's live session; none once its user left `web.users`."""
        session = self.sessions.get(request.cookies.get(cookies.SESSION))
        return session if session is not None and session.user in self.users else None

    def user(self, request: Request) -> tuple[str | None, str | None]:
        """(user name, "session" | "basic"), or (None, None). Blocking when Basic is checked."""
        session = self.session(request)
        if session is not None:
            return session.user, "session"
        credentials = basic_credentials(request)
        if credentials is None:
            return None, None
        name, password = credentials
        key = hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        now = self.clock()
        with self._lock:
            if self._remembered.get(key, 0.0) > now and name in self.users:
                return name, "basic"
        if not self.login(name, password, client_address(request), "basic"):
            return None, None
        with self._lock:  # only right passwords get here: at most one entry per user
            self._remembered = {k: t for k, t in self._remembered.items() if t > now}
            self._remembered[key] = now + BASIC_REMEMBER_S
        return name, "basic"

    def may_scrape(self, request: Request) -> bool:
        """/metrics: the right bearer token (when one is configured), or a web user."""
        header = request.headers.get("authorization", "")
        if self.metrics_token and header[:7].lower() == "bearer ":
            return hmac.compare_digest(header[7:].strip().encode(), self.metrics_token.encode())
        return self.user(request)[0] is not None
