"""Login throttle (form and HTTP Basic alike), with two limits over one sliding window:

* per account: `per_account` failed logins for one user name within `window_s`, from anywhere;
  this is what stops guessing one radiologist's password, also from many addresses;
* per client address: `per_address` failures from one address (an IPv6 /64 counts as one), higher,
  so that one guesser behind a reverse proxy or NAT does not lock out the other radiologists
  behind the same address, yet cannot try many accounts either.

An attempt is counted when it is reserved, before the password is hashed, so N parallel guesses
get at most the limit evaluated; a good password takes its reservation back and clears the earlier
failures of the same account from the same address (the user's own typos). A guesser can
therefore lock the guessed account (from everywhere) for at most one window; that is the price of
stopping the guessing.
"""
from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

MAX_NAME = 128  # longer names are no account's; cut so they cannot take unbounded memory
SWEEP_EVERY_S = 60.0


class Throttled(Exception):
    """Too many failed logins for this account or from this address: answered with 429."""

    def __init__(self, retry_after_s: float):
        super().__init__("too many failed logins for this account or from this address; "
                         f"retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Attempt:
    at: float
    account: str
    address: str


def address_key(address: str) -> str:
    """The client address as the throttle counts it: an IPv6 host usually holds a whole /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:MAX_NAME]
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


class LoginThrottle:
    def __init__(self, per_account: int = 5, per_address: int = 30, window_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic):
        self.per_account, self.per_address = per_account, per_address
        self.window_s, self.clock = window_s, clock
        # account -> deque of (time, address); address -> deque of (time, account)
        self._accounts: dict[str, deque] = {}
        self._addresses: dict[str, deque] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def reserve(self, account: str, address: str) -> Attempt:
        """Count one login attempt now, or raise Throttled when either limit is reached."""
        account, address = account[:MAX_NAME], address_key(address)
        now = self.clock()
        with self._lock:
            self._sweep(now)
            waits = [self._wait(self._accounts, account, self.per_account, now),
                     self._wait(self._addresses, address, self.per_address, now)]
            waits = [w for w in waits if w is not None]
            if waits:
                raise Throttled(max(waits))
            self._accounts.setdefault(account, deque()).append((now, address))
            self._addresses.setdefault(address, deque()).append((now, account))
            return Attempt(now, account, address)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: forget this attempt and the same account's failures from the
        same address; failures of other accounts, or from elsewhere, still count."""
        with self._lock:
            self._drop(self._accounts, attempt.account, attempt.address)
            self._drop(self._addresses, attempt.address, attempt.account)

    def retry_after(self, account: str, address: str) -> float | None:
        """Seconds until this account from this address may try again, or None when it may now."""
        now = self.clock()
        with self._lock:
            waits = [self._wait(self._accounts, account[:MAX_NAME], self.per_account, now),
                     self._wait(self._addresses, address_key(address), self.per_address, now)]
        waits = [w for w in waits if w is not None]
        return max(waits) if waits else None

    def _wait(self, table: dict[str, deque], key: str, limit: int, now: float) -> float | None:
        times = table.get(key)
        while times and now - times[0][0] >= self.window_s:
            times.popleft()
        if not times:
            table.pop(key, None)
            return None
        return self.window_s - (now - times[0][0]) if len(times) >= limit else None

    @staticmethod
    def _drop(table: dict[str, deque], key: str, other: str) -> None:
        kept = deque(entry for entry in table.get(key, ()) if entry[1] != other)
        if kept:
            table[key] = kept
        else:
            table.pop(key, None)

    def _sweep(self, now: float) -> None:
        """Forget expired keys now and then, so names and addresses tried once do not pile up."""
        if now - self._swept < SWEEP_EVERY_S:
            return
        self._swept = now
        for table in (self._accounts, self._addresses):
            for key in list(table):
                self._wait(table, key, 1, now)
