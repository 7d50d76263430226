"""Prometheus metrics: stage histograms from a job's timings, score drift, queue depth, failures."""
from prometheus_client.parser import text_string_to_metric_families

from ichnode.store.jobs import JobState
from ichnode.triage.metrics import Metrics, failure_reason


def samples(metrics):
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_stage_histograms_from_timings(stores):
    m = Metrics(stores.jobs, stores.outbox)
    timings = {"last_received_at": 110.0, "completed_at": 111.0, "assemble_s": 0.4,
               "infer_s": 2.5, "write_s": 0.3, "send_s": 0.2}
    m.observe_timings(timings, first_received=100.0)
    s = samples(m)
    assert s[("ichnode_stage_seconds_sum", (("stage", "receive"),))] == 10.0
    assert s[("ichnode_stage_seconds_sum", (("stage", "complete"),))] == 1.0
    assert s[("ichnode_stage_seconds_sum", (("stage", "infer"),))] == 2.5
    assert s[("ichnode_stage_seconds_count", (("stage", "send"),))] == 1.0
    assert s[("ichnode_stage_seconds_count", (("stage", "notify"),))] == 0.0  # listed before use
    assert s[("ichnode_stage_seconds_bucket", (("le", "5.0"), ("stage", "infer")))] == 1.0
    assert s[("ichnode_stage_seconds_bucket", (("le", "2.0"), ("stage", "infer")))] == 0.0


def test_score_histogram_by_scanner_model_and_failures(stores):
    m = Metrics(stores.jobs, stores.outbox)
    m.observe_score({"any": 0.93}, "Revolution CT")
    m.observe_score({"any": 0.12}, "Revolution CT")
    m.observe_score({}, "Revolution CT")  # an engine without probabilities: nothing observed
    m.failure("eligibility", "coverage 45.2 mm < 60 mm")
    s = samples(m)
    model = ("manufacturer_model", "Revolution CT")
    assert s[("ichnode_model_score_any_count", (model,))] == 2.0
    assert s[("ichnode_model_score_any_bucket", (("le", "0.2"), model))] == 1.0
    assert s[("ichnode_failures_total", (("reason", "coverage N mm < N mm"), ("stage", "eligibility")))] == 1.0
    assert failure_reason("x" * 200) == "x" * 80


def test_queue_depth_is_read_at_scrape_time(stores):
    m = Metrics(stores.jobs, stores.outbox)
    stores.job(state=JobState.QUEUED)
    stores.job(state=JobState.SENDING)
    stores.job()
    s = samples(m)
    assert s[("ichnode_queue_depth", (("state", "queued"),))] == 1.0
    assert s[("ichnode_queue_depth", (("state", "sending"),))] == 1.0
    assert s[("ichnode_queue_depth", (("state", "receiving"),))] == 0.0
    stores.jobs.record_instance(study_uid="7", series_uid="7.1", sop_uid="7.1.1", path="/x", size=1,
                                calling_aet="T", modality="CT", description=None, expected_count=None)
    assert samples(m)[("ichnode_queue_depth", (("state", "receiving"),))] == 1.0


def test_spool_slots_ready_is_read_at_scrape_time(stores):
    m = Metrics(stores.jobs, stores.outbox)
    ready = [512]
    m.watch_slots(lambda: ready[0])
    assert samples(m)[("ichnode_spool_slots_ready", ())] == 512.0
    ready[0] = 3
    assert samples(m)[("ichnode_spool_slots_ready", ())] == 3.0
