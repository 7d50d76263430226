import pytest

from ichnode.errors import ConfigError, IllegalTransition
from ichnode.store.jobs import JobState, JobStore, series_key


@pytest.fixture
def store(database):
    s = JobStore(database)
    yield s
    s.close()


def record(store, sop, series="1.2.3", study="1.2", now=100.0, expected=None):
    return store.record_instance(study_uid=study, series_uid=series, sop_uid=sop, path=f"/x/{sop}",
                                 size=10, calling_aet="SCU", modality="CT", description="Head",
                                 expected_count=expected, now=now)


def test_series_completes_by_count_or_quiet_period(store):
    record(store, "1", expected=2, now=100)
    assert store.due_series(now=101, quiet_s=10, expected_default=None) == []
    record(store, "2", expected=2, now=101)
    assert [s.instance_count for s in store.due_series(101, 10, None)] == [2]
    record(store, "3", series="9.9", now=102)
    due = store.due_series(now=111.9, quiet_s=10, expected_default=None)
    assert [s.series_uid for s in due] == ["1.2.3"]
    assert [s.series_uid for s in store.due_series(112, 10, None)] == ["1.2.3", "9.9"]


def test_same_series_uid_in_another_study_is_another_series(store):
    record(store, "1", study="1.2")
    record(store, "2", study="7.7")
    assert {s.key for s in store.all_series()} == {series_key("1.2", "1.2.3"), series_key("7.7", "1.2.3")}


def test_resent_instance_is_not_counted_twice(store):
    record(store, "1")
    assert record(store, "1").instance_count == 1


def test_job_lifecycle_and_illegal_transitions(store):
    record(store, "1")
    key = series_key("1.2", "1.2.3")
    job_id = store.close_series(key)
    assert store.job(job_id).state is JobState.QUEUED
    with pytest.raises(IllegalTransition, match="queued -> done"):
        store.transition(job_id, JobState.DONE)
    store.transition(job_id, JobState.ANALYSING)
    store.transition(job_id, JobState.SENDING, outcome="analysed", results=["a.dcm"],
                     timings={"infer_s": 1.5})
    job = store.job(job_id)
    assert job.results == ["a.dcm"] and job.timings == {"infer_s": 1.5} and job.outcome == "analysed"
    with pytest.raises(ValueError, match="unknown job fields"):
        store.transition(job_id, JobState.DONE, attempts=1)  # retries are the outbox's
    store.transition(job_id, JobState.DONE)
    with pytest.raises(IllegalTransition):
        store.transition(job_id, JobState.ANALYSING)
    with pytest.raises(IllegalTransition, match="does not exist"):
        store.transition(999, JobState.ANALYSING)


def test_late_instance_reopens_series_and_supersedes_unfinished_job(store):
    record(store, "1")
    key = series_key("1.2", "1.2.3")
    first = store.close_series(key)
    late = record(store, "2")
    assert late.open and late.generation == 2 and late.instance_count == 2
    second = store.close_series(key)
    assert store.job(first).state is JobState.SUPERSEDED
    assert store.job(second).state is JobState.QUEUED and store.job(second).generation == 2


def test_recover_after_crash(store):
    record(store, "1")
    record(store, "2", series="5.5")
    a = store.close_series(series_key("1.2", "1.2.3"))
    b = store.close_series(series_key("1.2", "5.5"))
    store.transition(a, JobState.ANALYSING)
    store.transition(b, JobState.ANALYSING)
    store.transition(b, JobState.SENDING)
    assert store.recover() == [a]
    assert store.job(a).state is JobState.QUEUED
    assert store.job(b).state is JobState.SENDING  # the outbox still owes its objects


def test_a_job_store_from_before_schema_versions_is_migrated(tmp_path):
    import sqlite3

    from ichnode.store.jobs import MIGRATIONS

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)  # the jobs table as it was before analysis_starts
    old.executescript("""
        CREATE TABLE series (key TEXT PRIMARY KEY, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL,
            modality TEXT, description TEXT, expected_count INTEGER,
            instance_count INTEGER NOT NULL DEFAULT 0, generation INTEGER NOT NULL DEFAULT 1,
            open INTEGER NOT NULL DEFAULT 1, first_received REAL NOT NULL, last_received REAL NOT NULL);
        CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, series_key TEXT NOT NULL,
            generation INTEGER NOT NULL, state TEXT NOT NULL, outcome TEXT, reason TEXT,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL, error TEXT,
            results TEXT NOT NULL DEFAULT '[]', timings TEXT NOT NULL DEFAULT '{}',
            created REAL NOT NULL, updated REAL NOT NULL);
        INSERT INTO series VALUES ('1.2/1.2.3', '1.2', '1.2.3', 'CT', NULL, NULL, 1, 1, 0, 0, 0);
        INSERT INTO jobs (series_key, generation, state, created, updated)
            VALUES ('1.2/1.2.3', 1, 'analysing', 0, 0);
    """)
    old.close()
    store = JobStore(path)
    (job,) = store.jobs()
    assert job.analysis_starts == 0 and store.recover() == [job.id]
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_versions WHERE owner='jobs'").fetchone() == (len(MIGRATIONS),)
    db.execute("UPDATE schema_versions SET version=99 WHERE owner='jobs'")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match=r"schema version 99, newer than this ichnode knows"):
        JobStore(path)


def test_completion_and_taking_a_job_happen_once_across_processes(store, database):
    """Two job stores on one database are two receivers (or two workers): a series is completed
    by one of them, a queued job is taken by one, a stale job is republished by one."""
    other = JobStore(database)
    try:
        record(store, "1")
        record(other, "2")
        key = series_key("1.2", "1.2.3")
        assert store.series(key).instance_count == 2
        job_id = store.close_series(key, now=200.0)
        assert other.close_series(key, now=200.0) is None  # already completed
        assert len(store.jobs()) == 1
        assert store.stale_queued(before=300.0, now=400.0) == [job_id]
        assert other.stale_queued(before=300.0, now=400.0) == []  # touched by the first
        store.transition(job_id, JobState.ANALYSING)
        with pytest.raises(IllegalTransition, match="analysing -> analysing"):
            other.transition(job_id, JobState.ANALYSING)
    finally:
        other.close()


def test_a_job_whose_analyser_died_is_restarted_then_parked(store):
    from ichnode.store.jobs import MAX_ANALYSIS_STARTS

    record(store, "1")
    job_id = store.close_series(series_key("1.2", "1.2.3"))
    for _ in range(MAX_ANALYSIS_STARTS - 1):
        store.transition(job_id, JobState.ANALYSING)
        assert store.restart_analysis(job_id) is JobState.QUEUED
    store.transition(job_id, JobState.ANALYSING)
    assert store.restart_analysis(job_id) is JobState.FAILED
    assert "parked" in store.job(job_id).error
    assert store.restart_analysis(job_id) is JobState.FAILED  # not ANALYSING: unchanged


def test_states_of_more_jobs_than_one_statement_takes(store):
    """The worklist asks for its rows' job states; a year of studies is more ids than one
    statement takes (PostgreSQL's protocol: 65535 parameters; SQLite's build limit)."""
    record(store, "1")
    job_id = store.close_series(series_key("1.2", "1.2.3"))
    assert store.states([*range(-70_000, 0), job_id]) == {job_id: JobState.QUEUED}
    assert store.count(JobState.QUEUED) == 1 and store.count(JobState.SUPERSEDED) == 0
