"""`ichnode serve` warns when a listener is reachable beyond loopback with empty allow-lists, or an
outbound TLS peer is not verified: the pure check (config -> warnings) and what `warn` emits."""
import io

import pytest
from structlog.testing import capture_logs

from ichnode.config import load_config
from ichnode.exposure import exposure_warnings, is_loopback, warn

USER = [{"name": "ann", "password_hash": "scrypt$16384$8$1$c2FsdA==$aGFzaA=="}]


def config(**overrides):
    return load_config(None, overrides={"destinations": [], **overrides})


def test_packaged_default_listens_on_all_interfaces_and_is_warned():
    (text,) = exposure_warnings(load_config(None))
    assert text.startswith("DICOM listener on 0.0.0.0:11112 (all interfaces) accepts associations "
                           "from any address and any calling AE title")
    assert "node.allowed_addresses" in text and "node.allowed_calling_aets" in text


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_listeners_are_not_warned(host):
    assert is_loopback(host)
    assert exposure_warnings(config(**{"node.host": host, "web.enabled": True, "web.host": host,
                                       "web.users": USER})) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "192.168.0.5", "pacs-gw.example"])
def test_addresses_beyond_loopback_count_as_exposed(host):
    assert not is_loopback(host)


@pytest.mark.parametrize("lists", [{"node.allowed_calling_aets": ["CT1"]},
                                   {"node.allowed_addresses": ["10.20.0.0/16"]}])
def test_either_allow_list_silences_the_dicom_warning(lists):
    assert exposure_warnings(config(**{"node.host": "0.0.0.0", **lists})) == []


def test_web_beyond_loopback_is_warned_and_plain_http_too():
    web = {"node.host": "127.0.0.1", "web.enabled": True, "web.host": "10.0.0.7", "web.port": 8443,
           "web.users": USER}
    reach, plain = exposure_warnings(config(**web))
    assert reach.startswith("web server on 10.0.0.7:8443 is reachable beyond loopback")
    assert plain.startswith("web server on 10.0.0.7:8443 serves plain HTTP")
    # An allow-list set: the reach warning goes, the clear-text one stays (web.tls_cert unset).
    (only,) = exposure_warnings(config(**web, **{"node.allowed_addresses": ["10.0.0.0/8"]}))
    assert "plain HTTP" in only
    # The web server switched off: nothing about it.
    assert exposure_warnings(config(**{**web, "web.enabled": False})) == []


def test_unverified_outbound_tls_is_warned(tmp_path):
    dest = {"name": "pacs", "ae_title": "PACS", "host": "pacs", "port": 2762,
            "tls": {"verify": False}}
    warnings = exposure_warnings(config(**{
        "node.host": "127.0.0.1", "destinations": [dest],
        "notify.mllp": {"host": "ris", "port": 2575, "tls": {"verify": False}}}))
    assert warnings == ["destinations[0] (pacs): tls.verify is false, the peer's certificate is "
                        "not checked",
                        "notify.mllp: tls.verify is false, the listener's certificate is not checked"]


def test_warn_logs_and_prints_each_warning():
    stream = io.StringIO()
    with capture_logs() as events:
        returned = warn(config(**{"node.host": "0.0.0.0"}), stream=stream)
    assert len(returned) == 1
    assert stream.getvalue() == f"ichnode: WARNING: {returned[0]}\n"
    assert [(e["event"], e["log_level"], e["warning"]) for e in events] == \
        [("exposure", "warning", returned[0])]
    quiet = io.StringIO()
    assert warn(config(**{"node.host": "127.0.0.1"}), stream=quiet) == [] and quiet.getvalue() == ""
