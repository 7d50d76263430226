"""Failed logins are throttled per client address, on the form and on HTTP Basic alike."""
import base64

from ichnode.web.throttle import LoginThrottle

from tests.web.conftest import PASSWORD
from tests.web.test_api import Client, start


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_throttle_counts_failures_per_address_within_the_window():
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("10.0.0.1") is None
        throttle.failed("10.0.0.1")
        clock.now += 10
    assert throttle.retry_after("10.0.0.1") == 30  # the first failure leaves the window at +60
    assert throttle.retry_after("10.0.0.2") is None  # another computer is not affected
    clock.now += 30
    assert throttle.retry_after("10.0.0.1") is None
    throttle.failed("10.0.0.1")
    throttle.succeeded("10.0.0.1")  # a good login clears the address
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") is None


def test_login_form_and_basic_auth_are_throttled(stores, tmp_path, users):
    server = start(stores, tmp_path, users, login_max_failures=3, login_window_s=600)
    try:
        client = Client(f"http://127.0.0.1:{server.port}")
        for _ in range(3):
            assert client.login(password="wrong")[0] == 401
        status, headers, page, _ = client.login()  # the right password, but too late
        assert status == 429 and "Too many failed logins" in page
        assert 590 <= int(headers["Retry-After"]) <= 601
        basic = {"Authorization": "Basic " + base64.b64encode(f"ann:{PASSWORD}".encode()).decode()}
        status, headers, body, _ = client.request("/api/worklist", headers=basic)
        assert status == 429 and "too many failed logins" in body
    finally:
        server.stop()
