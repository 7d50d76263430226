"""The worklist store: order, acknowledgement, superseded jobs, version, status columns."""
from ichnode.store.jobs import JobState
from ichnode.triage.worklist import triage_columns


def test_sorted_by_priority_then_arrival(stores):
    routine = stores.job(priority="routine", priority_rank=3, arrived=100.0)
    late_critical = stores.job(priority="critical", priority_rank=0, arrived=300.0)
    early_critical = stores.job(priority="critical", priority_rank=0, arrived=200.0)
    not_analysed = stores.job(priority="not analysed", priority_rank=2, arrived=50.0)
    high = stores.job(priority="high", priority_rank=1, arrived=400.0)
    order = [r["job_id"] for r in stores.worklist.items()]
    assert order == [early_critical, late_critical, high, not_analysed, routine]


def test_acknowledge_and_dismiss_record_who_and_when(stores):
    job = stores.job()
    before = stores.worklist.version()
    row = stores.worklist.mark(job, "acknowledge", "dr.house", now=1000.0)
    assert (row["acknowledged_by"], row["acknowledged_at"]) == ("dr.house", 1000.0)
    assert stores.worklist.version() != before
    stores.worklist.mark(job, "dismiss", "dr.wilson", now=1001.0)
    assert stores.worklist.items() == []
    (shown,) = stores.worklist.items(include_dismissed=True)
    assert shown["dismissed_by"] == "dr.wilson"
    assert stores.worklist.restore(job)["dismissed_at"] is None
    assert stores.worklist.mark(999, "acknowledge", "x") is None


def test_reanalysis_keeps_acknowledgement_unless_priority_changes(stores):
    job = stores.job()
    stores.worklist.mark(job, "acknowledge", "dr.house")
    assert stores.worklist.upsert(job, reason="same priority")["acknowledged_by"] == "dr.house"
    row = stores.worklist.upsert(job, priority="high", priority_rank=1)
    assert row["acknowledged_by"] is None


def test_only_the_latest_job_of_a_series_is_listed(stores):
    old = stores.job(series="9.9")
    new = stores.job(series="9.9", state=JobState.QUEUED)
    assert [r["job_id"] for r in stores.worklist.items()] == [new]
    stores.jobs.transition(new, JobState.SUPERSEDED)
    assert stores.worklist.items() == []  # superseded: not on the list
    assert stores.worklist.get(old)["job_state"] == "done"


def test_json_columns_round_trip_and_status_columns(stores, tmp_path):
    job = stores.job()
    row = stores.worklist.get(job)
    assert row["volumes"] == {"ICH": 42.0} and row["flags"] == ["ICH"]
    assert row["models"][0]["name"] == "ichnode-classical-hu"
    stores.worklist.mark(job, "acknowledge", "dr.house")
    columns = triage_columns(stores.jobs, tmp_path / "ichnode.sqlite")
    assert columns[job]["priority"] == "critical"
    assert columns[job]["acknowledged"].startswith("dr.house ")
    assert "DOE" not in str(columns)  # no patient data in the status columns


def test_ichnode_status_shows_priority_and_acknowledgement(stores, tmp_path, capsys):
    import json

    from ichnode.config import load_config
    from ichnode.status import print_status

    acked, open_job = stores.job(), stores.job(priority="routine", priority_rank=3)
    stores.worklist.mark(acked, "acknowledge", "dr.house")
    config = load_config(None, overrides={"data_dir": str(tmp_path)})
    print_status(config, as_json=True)
    rows = {r["job"]: r for r in json.loads(capsys.readouterr().out) if "job" in r}
    assert rows[acked]["priority"] == "critical" and rows[acked]["acknowledged"].startswith("dr.house")
    assert rows[open_job]["priority"] == "routine" and rows[open_job]["acknowledged"] == ""
    print_status(config)
    table = capsys.readouterr().out
    assert "priority" in table and "critical" in table and "dr.house" in table


def test_old_closed_rows_leave_the_worklist_but_open_ones_never_do(stores):
    now, day = 100 * 86400.0, 86400.0
    old_open = stores.job(arrived=now - 30 * day)
    old_seen = stores.job(arrived=now - 30 * day)
    recent_seen = stores.job(arrived=now - 2 * day)
    stores.worklist.mark(old_seen, "acknowledge", "ann", now=now - 29 * day)
    stores.worklist.mark(recent_seen, "acknowledge", "ann", now=now - day)
    listed = [r["job_id"] for r in stores.worklist.items(closed_days=7, now=now)]
    assert sorted(listed) == sorted([old_open, recent_seen])
    assert len(stores.worklist.items(now=now)) == 3  # no limit: everything
