"""The web: keys for sessions, the login throttle and /metrics: defaults, and errors that name the
file, the key and the value (never a secret)."""
import pytest

from ichnode.config import load_config
from ichnode.errors import ConfigError

TOKEN = "0123456789abcdef" * 4


def test_defaults():
    web = load_config().web
    assert (web.secure_cookie, web.session_max_age_s) == ("auto", 12 * 3600)
    assert (web.login_max_failures, web.login_max_failures_per_address, web.login_window_s) == (5, 30, 900)
    assert (web.metrics, web.metrics_token) == (True, None)


def test_new_keys_load(tmp_path):
    path = tmp_path / "ichnode.yaml"
    path.write_text(f"web: {{secure_cookie: always, login_max_failures_per_address: 50, "
                    f"metrics_token: '{TOKEN}'}}")
    web = load_config(path).web
    assert (web.secure_cookie, web.login_max_failures_per_address, web.metrics_token) == (
        "always", 50, TOKEN)


@pytest.mark.parametrize("text, key, value", [
    ("web: {secure_cookie: sometimes}", "web.secure_cookie", "'sometimes'"),
    ("web: {secure_cookie: true}", "web.secure_cookie", "True"),
    ("web: {login_max_failures_per_address: 0}", "web.login_max_failures_per_address", "0"),
    ("web: {session_max_age_s: 0}", "web.session_max_age_s", "0"),
    ("web: {metrics_token: short-secret}", "web.metrics_token", "<hidden>"),
])
def test_errors_name_file_key_and_value(tmp_path, text, key, value):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and key in message and value in message
    assert "short-secret" not in message
