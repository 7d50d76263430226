"""/metrics: for web users and the web.metrics_token bearer only; labels a sender controls keep a
bounded number of values."""
import base64

import requests
from prometheus_client.parser import text_string_to_metric_families

from ichnode.config import WebConfig
from ichnode.triage.metrics import MAX_FAILURE_REASONS, MAX_SCANNER_MODELS, OTHER, Metrics
from ichnode.web.app import build_app
from ichnode.web.server import WebServer

from tests.web.conftest import PASSWORD

TOKEN = "0123456789abcdef" * 4


def serve(stores, tmp_path, users, registry, **web):
    config = WebConfig(enabled=True, host="127.0.0.1", port=0, users=users, **web)
    server = WebServer(build_app(config, stores.worklist, stores.outbox, registry, tmp_path / "results"), config)
    return server.start()


def scrape(port, headers=None):
    return requests.get(f"http://127.0.0.1:{port}/metrics", headers=headers or {}, timeout=10)


def test_metrics_need_a_user_or_the_token(stores, tmp_path, users):
    server = serve(stores, tmp_path, users, Metrics(stores.jobs, stores.outbox), metrics_token=TOKEN)
    try:
        assert scrape(server.port).status_code == 401
        assert scrape(server.port, {"Authorization": "Bearer " + TOKEN[:-1] + "x"}).status_code == 401
        answer = scrape(server.port, {"Authorization": "Bearer " + TOKEN})
        assert answer.status_code == 200 and "ichnode_stage_seconds_bucket" in answer.text
        basic = base64.b64encode(f"ann:{PASSWORD}".encode()).decode()
        assert scrape(server.port, {"Authorization": "Basic " + basic}).status_code == 200
    finally:
        server.stop()


def test_metrics_can_be_off(stores, tmp_path, users):
    server = serve(stores, tmp_path, users, Metrics(stores.jobs, stores.outbox), metrics=False,
                   metrics_token=TOKEN)
    try:
        assert scrape(server.port, {"Authorization": "Bearer " + TOKEN}).status_code == 404
    finally:
        server.stop()


def test_a_hostile_sender_cannot_grow_the_labels(stores, tmp_path, users):
    metrics = Metrics(stores.jobs, stores.outbox)
    metrics.observe_score({"any": 0.9}, "SOMATOM Force")  # the site's scanner, seen first
    for i in range(1000):
        metrics.observe_score({"any": 0.5}, f"SCANNER-{'x' * (i % 7)}-{chr(65 + i % 26) * (i % 50)}")
        metrics.failure("eligibility", f"modality {'Z' * (i % 90)} is not CT")
    metrics.observe_score({"any": 0.1}, "SOMATOM Force")  # still its own series
    server = serve(stores, tmp_path, users, metrics, metrics_token=TOKEN)
    try:
        text = scrape(server.port, {"Authorization": "Bearer " + TOKEN}).text
    finally:
        server.stop()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    models = {s.labels["manufacturer_model"] for s in samples if s.name == "ichnode_model_score_any_count"}
    reasons = {s.labels["reason"] for s in samples if s.name == "ichnode_failures_total"}
    assert len(models) == MAX_SCANNER_MODELS + 1 and {"SOMATOM Force", OTHER} <= models
    assert len(reasons) == MAX_FAILURE_REASONS + 1 and OTHER in reasons
    force = [s.value for s in samples if s.name == "ichnode_model_score_any_count"
             and s.labels["manufacturer_model"] == "SOMATOM Force"]
    assert force == [2.0]
