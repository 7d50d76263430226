"""Server-side login sessions: the cookie carries only a random id; the record (user, CSRF token,
expiry) stays on the server. Logout deletes the record, so a copied cookie stops working at once,
and expiry is checked here, whatever the browser does with the cookie's Max-Age.

Kept in memory, not in the node's SQLite: the web server is one process of one node, every page
poll checks the session, and nothing else needs the records. A restart therefore ends all logins
(the radiologists log in again), which is also what a restart with changed users should do.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

MAX_PER_USER = 20  # a script logging in over and over cannot grow the table without bound


@dataclass(frozen=True)
class Session:
    id: str
    user: str
    csrf: str  # the token every form of this session sends back
    expires: float  # on the store's clock


class SessionStore:
    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic,
                 per_user: int = MAX_PER_USER):
        self.max_age_s, self.clock, self.per_user = max_age_s, clock, per_user
        self._sessions: dict[str, Session] = {}  # insertion order: oldest first
        self._lock = threading.Lock()

    def create(self, user: str) -> Session:
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(24),
                          self.clock() + self.max_age_s)
        with self._lock:
            now = self.clock()
            for sid, old in list(self._sessions.items()):
                if old.expires <= now:
                    del self._sessions[sid]
            mine = [sid for sid, old in self._sessions.items() if old.user == user]
            for sid in mine[:max(0, len(mine) - self.per_user + 1)]:
                del self._sessions[sid]  # the user's oldest sessions make room
            self._sessions[session.id] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session of this cookie value, or None (unknown, logged out or expired)."""
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires <= self.clock():
                del self._sessions[sid]
                return None
            return session

    def delete(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def __len__(self) -> int:
        return len(self._sessions)
