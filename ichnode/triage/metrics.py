"""Prometheus metrics of one node (own registry, served at /metrics on the worklist web app, to
logged-in users or the web.metrics_token bearer).

No patient data in any label: stages, priorities, channels, failure kinds (digits masked) and the
source series' ManufacturerModelName (for score drift per scanner model). The last two come from
outside (a sender's header, a peer's error text), so each keeps at most a fixed number of distinct
values and counts later new ones as "other": a hostile sender cannot grow /metrics without bound.
"""
from __future__ import annotations

import re
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ichnode.store.outbox import Purpose

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
STAGES = ("receive", "complete", "assemble", "infer", "write", "send", "notify")
MAX_SCANNER_MODELS = 32  # distinct manufacturer_model values; a site has a handful of CT models
MAX_FAILURE_REASONS = 64  # distinct reason values, over all stages
OTHER = "other"


def failure_reason(text: str | None) -> str:
    """A bounded label from a free-text reason: numbers masked, cut to 80 characters."""
    text = re.sub(r"\d+(\.\d+)?", "N", text or "unknown")
    return re.sub(r"\s+", " ", text).strip()[:80]


class BoundedLabel:
    """The first `limit` distinct values of a label pass as they are; any later new value is
    OTHER. First come rather than top-N by count: simpler, and a series once scraped cannot be
    taken back anyway; a site's own scanners normally fill the first places."""

    def __init__(self, limit: int):
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
            return OTHER


class Metrics:
    def __init__(self, jobs=None, outbox=None):
        """jobs, outbox: the stores whose queue depths are read at scrape time (None: left out)."""
        r = self.registry = CollectorRegistry()
        self.instances = Counter("ichnode_instances_received", "DICOM instances stored", registry=r)
        self.series = Counter("ichnode_series_received", "New series (first instance stored)",
                              registry=r)
        self.stage = Histogram("ichnode_stage_seconds", "Seconds spent per pipeline stage",
                               ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.time_to_notification = Histogram(
            "ichnode_time_to_notification_seconds",
            "First image received to notification acknowledged", ["channel"],
            buckets=STAGE_BUCKETS, registry=r)
        self.failures = Counter("ichnode_failures", "Failures by stage and reason",
                                ["stage", "reason"], registry=r)
        self.triaged = Counter("ichnode_studies_triaged", "Worklist rows by priority", ["priority"],
                               registry=r)
        self.notifications = Counter("ichnode_notifications", "Notification attempts by result",
                                     ["channel", "result"], registry=r)
        self.score = Histogram("ichnode_model_score_any",
                               "probabilities['any'] of analysed series, by source scanner model",
                               ["manufacturer_model"], buckets=SCORE_BUCKETS, registry=r)
        self._scanner_model = BoundedLabel(MAX_SCANNER_MODELS)
        self._failure_reason = BoundedLabel(MAX_FAILURE_REASONS)
        for stage in STAGES:
            self.stage.labels(stage=stage)  # every stage is listed from the start
        if jobs is not None and outbox is not None:
            r.register(_QueueCollector(jobs, outbox))

    def watch_slots(self, ready) -> None:
        """Spool slots ready (ready(): a count, read at scrape time). Below the series sizes a site
        receives, instances take the ordinary, slower write (ichnode/store/slots.py)."""
        self.registry.register(_Gauge("ichnode_spool_slots_ready",
                                      "Prepared spool slots ready for received instances", ready))

    def observe_timings(self, timings: dict, first_received: float | None) -> None:
        """Stage latencies of one finished job, from its `timings` JSON."""
        last = timings.get("last_received_at")
        if first_received is not None and last is not None:
            self.stage.labels(stage="receive").observe(max(0.0, last - first_received))
        if last is not None and timings.get("completed_at") is not None:
            self.stage.labels(stage="complete").observe(max(0.0, timings["completed_at"] - last))
        for stage in ("assemble", "infer", "write", "send"):
            value = timings.get(f"{stage}_s")
            if value is not None:
                self.stage.labels(stage=stage).observe(value)

    def observe_score(self, probabilities: dict, scanner_model: str | None) -> None:
        if "any" in probabilities:
            model = self._scanner_model(re.sub(r"\s+", " ", scanner_model or "unknown").strip()[:64])
            self.score.labels(manufacturer_model=model).observe(float(probabilities["any"]))

    def failure(self, stage: str, reason: str | None) -> None:
        self.failures.labels(stage=stage, reason=self._failure_reason(failure_reason(reason))).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _QueueCollector:
    """Queue depth read from the job store and the outbox at scrape time."""

    def __init__(self, jobs, outbox):
        self.jobs, self.outbox = jobs, outbox

    def describe(self):
        return []

    def collect(self):
        depth = GaugeMetricFamily("ichnode_queue_depth",
                                  "Series receiving, jobs waiting or in progress, by state",
                                  labels=["state"])
        for state, count in self.jobs.queue_depth().items():
            depth.add_metric([state], count)
        yield depth
        yield GaugeMetricFamily("ichnode_notifications_pending", "Notifications not yet sent",
                                value=self.outbox.pending(Purpose.NOTIFICATION))


class _Gauge:
    """One gauge whose value a function gives at scrape time."""

    def __init__(self, name: str, documentation: str, value):
        self.name, self.documentation, self.value = name, documentation, value

    def describe(self):
        return []

    def collect(self):
        yield GaugeMetricFamily(self.name, self.documentation, value=self.value())
