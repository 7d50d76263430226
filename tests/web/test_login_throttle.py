"""Failed logins are throttled per account and, with a higher limit, per client address, on the
form and on HTTP Basic alike; an attempt is counted before its password is hashed."""
import base64
import re
import threading

import pytest
import requests
from structlog.testing import capture_logs

from ichnode.config import WebUser
from ichnode.web.auth import hash_password
from ichnode.web.throttle import LoginThrottle, Throttled, address_key

from tests.web.conftest import PASSWORD
from tests.web.test_api import Client, start


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def fail(throttle, account, address, times=1):
    for _ in range(times):
        throttle.reserve(account, address)  # never succeeded: stays a failure


def test_each_account_has_its_limit_within_the_window():
    clock = Clock()
    throttle = LoginThrottle(per_account=3, per_address=10, window_s=60, clock=clock)
    for _ in range(3):
        fail(throttle, "ann", "10.0.0.1")
        clock.now += 10
    with pytest.raises(Throttled) as refused:
        throttle.reserve("ann", "10.0.0.9")  # the account, from anywhere
    assert refused.value.retry_after_s == 30  # the first failure leaves the window at +60
    throttle.reserve("bob", "10.0.0.1")  # another account from the guesser's address: allowed
    clock.now += 30
    throttle.reserve("ann", "10.0.0.1")


def test_an_address_has_a_higher_limit_over_all_accounts():
    throttle = LoginThrottle(per_account=3, per_address=5, window_s=60, clock=Clock())
    for name in ("a", "b", "c", "d", "e"):
        fail(throttle, name, "10.0.0.1")  # one guess each: no account is at its limit
    with pytest.raises(Throttled):
        throttle.reserve("bob", "10.0.0.1")
    throttle.reserve("bob", "10.0.0.2")


def test_an_attempt_counts_from_its_reservation_not_its_outcome():
    throttle = LoginThrottle(per_account=2, per_address=10, window_s=60, clock=Clock())
    throttle.reserve("ann", "10.0.0.1")
    throttle.reserve("ann", "10.0.0.1")  # both still hashing
    with pytest.raises(Throttled):
        throttle.reserve("ann", "10.0.0.1")


def test_a_good_login_clears_only_its_own_typos():
    throttle = LoginThrottle(per_account=4, per_address=10, window_s=60, clock=Clock())
    fail(throttle, "ann", "10.0.0.1", 2)  # ann's typos
    fail(throttle, "ann", "10.0.0.66")  # a guesser elsewhere
    throttle.succeeded(throttle.reserve("ann", "10.0.0.1"))
    fail(throttle, "ann", "10.0.0.1", 2)
    assert throttle.retry_after("ann", "10.0.0.1") is None
    fail(throttle, "ann", "10.0.0.1")  # 3 new + the guesser's 1 = 4: at the limit
    assert throttle.retry_after("ann", "10.0.0.1") is not None


def test_addresses_are_counted_as_hosts():
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::5") != address_key("2001:db8:1:2::5")
    assert address_key("::ffff:10.0.0.1") == address_key("10.0.0.1") == "10.0.0.1"
    assert address_key("testclient") == "testclient"
    throttle = LoginThrottle(per_account=10, per_address=2, window_s=60, clock=Clock())
    fail(throttle, "a", "2001:db8::1")
    fail(throttle, "b", "2001:db8::2")
    with pytest.raises(Throttled):
        throttle.reserve("c", "2001:db8::3")


def login_token(base):
    """A login form's CSRF token; the same value goes in the ichnode_login_csrf cookie."""
    page = requests.get(base + "/login", timeout=10)
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def post_login(base, token, user, password):
    return requests.post(base + "/login", cookies={"ichnode_login_csrf": token}, timeout=60,
                         data={"username": user, "password": password, "csrf": token, "next": "/"},
                         allow_redirects=False).status_code


def test_parallel_guesses_get_only_the_limit_evaluated(stores, tmp_path, users):
    server = start(stores, tmp_path, users, login_max_failures=5, login_window_s=600)
    try:
        base = f"http://127.0.0.1:{server.port}"
        token = login_token(base)
        statuses, gate = [], threading.Barrier(30)

        def guess(i):
            gate.wait()
            statuses.append(post_login(base, token, "ann", f"guess {i}"))

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(30)]
        with capture_logs() as events:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert sorted(statuses) == [401] * 5 + [429] * 25
        # One login_failed per password actually checked: only 5 were.
        assert [e["event"] for e in events].count("login_failed") == 5
        assert post_login(base, token, "ann", PASSWORD) == 429  # the right password, too late
    finally:
        server.stop()


def test_a_guesser_on_one_account_does_not_lock_out_the_next_desk(stores, tmp_path, users):
    """Behind one proxy address: ann's account is locked by the guesser; bob still logs in, until
    the address limit stops guessing over many accounts."""
    team = users + (WebUser("bob", hash_password("bob's password")),)
    server = start(stores, tmp_path, team, login_max_failures=3,
                   login_max_failures_per_address=6, login_window_s=600)
    try:
        guesser = Client(f"http://127.0.0.1:{server.port}")
        for _ in range(3):
            assert guesser.login(password="wrong")[0] == 401
        status, headers, page, _ = guesser.login()
        assert status == 429 and "Too many failed logins" in page
        assert 590 <= int(headers["Retry-After"]) <= 601
        bob = Client(guesser.base)
        status, _, page, _ = bob.login("bob", "bob's password")
        assert status == 200 and "bob" in page
        for name in ("carl", "dora"):  # 3 + 2 + 1 = 6 failures from the address
            assert guesser.login(name, "wrong")[0] == 401
        assert guesser.login("bob", "wrong")[0] == 401
        assert Client(guesser.base).login("bob", "bob's password")[0] == 429
    finally:
        server.stop()


def test_basic_auth_is_throttled_but_a_script_keeps_working(stores, tmp_path, users):
    server = start(stores, tmp_path, users, login_max_failures=3, login_window_s=600)
    try:
        client = Client(f"http://127.0.0.1:{server.port}")

        def basic(password):
            token = base64.b64encode(f"ann:{password}".encode()).decode()
            return client.request("/api/worklist", headers={"Authorization": f"Basic {token}"})

        assert basic(PASSWORD)[0] == 200  # a script, before the guessing starts
        for _ in range(3):
            assert basic("wrong")[0] == 401
        status, headers, body, _ = basic("wrong again")
        assert status == 429 and "too many failed logins" in body
        assert basic(PASSWORD)[0] == 200  # remembered: no new hash, no throttle slot
        assert client.login()[0] == 429  # the form, which has to hash, is throttled
    finally:
        server.stop()
