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


def test_a_bad_metrics_token_is_named_but_not_shown(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("web: {metrics_token: short-secret}")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "web.metrics_token" in message and "<hidden>" in message
    assert "short-secret" not in message
