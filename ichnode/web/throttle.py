"""Failed-login throttle: after `max_failures` failed logins (form or HTTP Basic) from one client
address within `window_s`, that address is refused with 429 until its oldest failure has left the
window. Password guessing becomes slow, and because the count is per address, not per account,
someone guessing elsewhere cannot lock a radiologist out of their own account.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class LoginThrottle:
    def __init__(self, max_failures: int = 5, window_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: dict[str, deque] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float | None:
        """Seconds until this address may try again, or None when it may now."""
        now = self.clock()
        with self._lock:
            times = self._failures.get(address)
            while times and now - times[0] >= self.window_s:
                times.popleft()
            if not times:
                self._failures.pop(address, None)
                return None
            return self.window_s - (now - times[0]) if len(times) >= self.max_failures else None

    def failed(self, address: str) -> None:
        with self._lock:
            self._failures.setdefault(address, deque()).append(self.clock())

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
