from pathlib import Path

import pytest

from ichnode.config import load_config
from ichnode.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_embedded_default_is_the_shipped_file():
    assert (REPO / "config" / "ichnode.yaml").read_text() == (
        REPO / "ichnode" / "defaults" / "ichnode.yaml").read_text()
    config = load_config()
    assert config.node.ae_title == "ICHNODE"
    assert config.node.port == 11112
    assert str(config.data_dir) == "var"
    assert len(config.destinations) == 1
    assert config.assembly.quiet_seconds == 10


@pytest.mark.parametrize("text, key, value", [
    ("node: {port: 'eleven'}", "node.port", "'eleven'"),
    ("node: {ae_title: THIS_AE_TITLE_IS_TOO_LONG}", "node.ae_title", "THIS_AE_TITLE_IS_TOO_LONG"),
    ("assembly: {quiet_secs: 3}", "assembly.quiet_secs", ""),
    ("engine: {models: [magic]}", "engine.models[0]", "magic"),
    ("destinations: [{name: a, ae_title: B, host: h, port: 70000}]", "destinations[0].port", "70000"),
    ("eligibility: {reject_contrast: maybe}", "eligibility.reject_contrast", "maybe"),
    ("spool: {prepared_slots: -1}", "spool.prepared_slots", "-1"),
    ("spool: {slot_kb: 0}", "spool.slot_kb", "0"),
    ("web: {secure_cookie: sometimes}", "web.secure_cookie", "'sometimes'"),
    ("web: {secure_cookie: true}", "web.secure_cookie", "True"),
    ("web: {login_max_failures_per_address: 0}", "web.login_max_failures_per_address", "0"),
    ("web: {session_max_age_s: 0}", "web.session_max_age_s", "0"),
    ("cluster: {broker_url: 'redis://h:6379'}", "cluster.broker_url", "redis://h:6379"),
    ("cluster: {database_url: 'mysql://u:pw@h/db'}", "cluster.database_url", "mysql://u:***@h/db"),
    ("{cluster: {database_url: 'postgresql://h/db'}, spool: {prepared_slots: 2}}", "spool.prepared_slots", "2"),
])
def test_errors_name_file_key_and_value(tmp_path, text, key, value):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and key in message and value in message


def test_missing_destination_field_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("destinations: [{name: a, host: h, port: 104}]")
    with pytest.raises(ConfigError, match=r"destinations\[0\].*ae_title"):
        load_config(path)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_overrides_apply_dotted_keys():
    config = load_config(None, overrides={"node.port": 0, "assembly.quiet_seconds": 2})
    assert config.node.port == 0 and config.assembly.quiet_seconds == 2.0


def test_a_key_given_twice_is_refused_with_its_line(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("spool:\n  slot_kb: 640\nretention: {interval_s: 60}\nspool:\n  slot_kb: 128\n")
    with pytest.raises(ConfigError, match=r"(?s)key .spool. is given twice.*line 4"):
        load_config(path)


def test_cluster_urls_come_from_the_environment_and_passwords_stay_out_of_errors(tmp_path, monkeypatch):
    from ichnode.config import require_cluster

    path = tmp_path / "cluster.yaml"
    path.write_text("spool: {prepared_slots: 0}\ncluster: {database_url: 'mysql://ichnode:s3cret@db/x'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "s3cret" not in str(info.value)
    path.write_text("spool: {prepared_slots: 0}\n")
    with pytest.raises(ConfigError, match="cluster.broker_url: needed for --role worker"):
        require_cluster(load_config(path), "worker")
    monkeypatch.setenv("ICHNODE_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    monkeypatch.setenv("ICHNODE_DATABASE_URL", "postgresql://ichnode@127.0.0.1/ichnode")
    config = load_config(path)
    require_cluster(config, "receiver")
    assert config.database == "postgresql://ichnode@127.0.0.1/ichnode"
