"""The outbox (ichnode.store.outbox) and its dispatcher (ichnode.delivery.dispatcher): one row per
thing owed, one state enum, one retry policy, one dead-letter rule; and the upgrade of a job store
written by the release before the outbox, which must lose nothing."""
import sqlite3
from pathlib import Path

import pytest

from ichnode.config import Config
from ichnode.delivery.channel import Context
from ichnode.delivery.dispatcher import Dispatcher
from ichnode.errors import DeliveryError
from ichnode.retry import RetryPolicy
from ichnode.store.jobs import JobState, JobStore
from ichnode.store.outbox import DeliveryState, Outbox, Purpose
from ichnode.triage.worklist import WorklistStore

BEFORE_OUTBOX = Path(__file__).parent / "data" / "job-store-before-outbox.sql"
PAIRS = [("9.1", "/r/SEG.dcm"), ("9.2", "/r/SR.dcm")]


@pytest.fixture
def outbox(database):
    o = Outbox(database)
    yield o
    o.close()


def test_a_result_is_owed_once_per_destination_and_acknowledged_rows_stay_sent(outbox):
    assert outbox.queue_results(1, "pacs", "dimse", PAIRS, now=10.0) == 2
    assert outbox.queue_results(1, "archive", "stow", PAIRS[:1], now=10.0) == 1
    first = outbox.deliveries(1)[0]
    outbox.mark_sent(first.id, ack_code="0x0000", now=11.0)
    assert outbox.sent_items(1, "pacs") == {"9.1"} and outbox.sent_items(1, "archive") == set()
    second = next(d for d in outbox.deliveries(1) if d.item == "9.2" and d.destination == "pacs")
    outbox.mark_failed([second.id], attempts=3, error="refused", next_attempt=None)  # dead letter
    assert outbox.states(1, Purpose.RESULT) == {DeliveryState.SENT: 1, DeliveryState.FAILED: 1,
                                                DeliveryState.PENDING: 1}
    # Queued again (a rerun of a failed job): the sent row stays sent, the dead letter is owed again.
    assert outbox.queue_results(1, "pacs", "dimse", PAIRS, now=20.0) == 1
    rows = {d.item: d for d in outbox.deliveries(1) if d.destination == "pacs"}
    assert rows["9.1"].state is DeliveryState.SENT and rows["9.1"].attempts == 1
    assert rows["9.2"].state is DeliveryState.PENDING and rows["9.2"].attempts == 0
    assert outbox.cancel(1) == 2  # superseded: what is still owed is not sent
    assert [d.item for d in outbox.due(now=99.0)] == []


def _dispatcher(outbox, channel, max_attempts=3):
    policy = RetryPolicy(max_attempts, backoff_initial_s=1.0, backoff_max_s=2.0)
    outcomes = []
    d = Dispatcher(outbox, Context(Config(), lambda job: None),
                   {Purpose.RESULT: policy, Purpose.NOTIFICATION: policy},
                   on_outcome=outcomes.append, channels={"test": channel})
    return d, outcomes


def test_partial_acknowledgement_backs_off_the_rest_then_dead_letters_them(outbox):
    """A channel that stores the first object and then loses the connection: the first is SENT,
    the second retried with backoff until max_attempts, then FAILED; nothing is sent twice."""
    calls = []

    def flaky(batch, context):
        calls.append([row.item for row in batch.rows])
        for row in batch.rows:
            if row.item == "9.2":
                raise DeliveryError("association aborted")
            batch.sent(row, ack_code="0x0000")

    outbox.queue_results(7, "pacs", "test", PAIRS, now=0.0)
    dispatcher, outcomes = _dispatcher(outbox, flaky)
    assert dispatcher.run_due(now=1.0) == 1
    rows = {d.item: d for d in outbox.deliveries(7)}
    assert rows["9.1"].state is DeliveryState.SENT
    assert rows["9.2"].state is DeliveryState.PENDING and rows["9.2"].attempts == 1
    assert rows["9.2"].next_attempt > rows["9.2"].created and rows["9.2"].error == "association aborted"
    for _ in range(5):
        dispatcher.run_due(now=1e12)
    assert calls == [["9.1", "9.2"], ["9.2"], ["9.2"]]  # the stored one never again
    dead = {d.item: d for d in outbox.deliveries(7)}["9.2"]
    assert (dead.state, dead.attempts) == (DeliveryState.FAILED, 3)
    assert [o.gave_up for o in outcomes] == [False, False, True]


def test_a_final_refusal_is_a_dead_letter_at_once_and_a_channel_bug_is_retried(outbox):
    def refusing(batch, context):
        raise DeliveryError("AR: unknown patient", retry=False, ack_code="AR")

    def buggy(batch, context):
        raise KeyError("oops")

    outbox.queue_notification(3, "test", arrived=0.0)
    dispatcher, outcomes = _dispatcher(outbox, refusing)
    dispatcher.run_due()
    (row,) = outbox.notifications(3)
    assert (row.state, row.attempts, row.ack_code) == (DeliveryState.FAILED, 1, "AR")
    assert outcomes[0].gave_up and outcomes[0].purpose is Purpose.NOTIFICATION

    outbox.queue_notification(4, "test", arrived=0.0)
    dispatcher, _ = _dispatcher(outbox, buggy)
    dispatcher.run_due()
    (row,) = outbox.notifications(4)
    assert (row.state, row.attempts) == (DeliveryState.PENDING, 1) and "KeyError" in row.error


def test_a_job_store_from_the_release_before_the_outbox_loses_nothing(tmp_path):
    path = tmp_path / "ichnode.sqlite"
    old = sqlite3.connect(path)
    old.executescript(BEFORE_OUTBOX.read_text())
    old.close()
    jobs, outbox = JobStore(path), Outbox(path)
    worklist = WorklistStore(path, jobs)
    try:
        done, waiting = jobs.jobs()
        # The job that was waiting to retry is SENDING: the outbox owes what had not arrived.
        assert (done.state, waiting.state) == (JobState.DONE, JobState.SENDING)
        assert waiting.error == "pacs down" and waiting.results == done.results
        assert outbox.sent_items(done.id, "pacs") == {"9.1", "9.2"}
        assert outbox.sent_items(waiting.id, "pacs") == {"9.1"}
        # Re-owing the waiting job's objects (what Node.start does) leaves one to send.
        assert outbox.queue_results(waiting.id, "pacs", "dimse",
                                    [("9.1", "/r/SEG_9.1.dcm"), ("9.2", "/r/SR_9.2.dcm")]) == 1
        sent, pending = outbox.notifications(done.id)[0], outbox.notifications(waiting.id)[0]
        assert (sent.state, sent.ack_code, sent.control_id, sent.attempts) == \
            (DeliveryState.SENT, "AA", "ICH1-1-1", 1)
        assert sent.time_to_delivery_s == pytest.approx(4.0)
        assert (pending.state, pending.channel, pending.attempts) == (DeliveryState.PENDING, "mllp", 0)
        assert worklist.get(done.id)["patient_name"] == "DOE^JANE"
        assert worklist.get(waiting.id)["job_state"] == "sending"
        tables = {r[0] for r in jobs._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "sent" not in tables and "notifications" not in tables
    finally:
        worklist.close()
        outbox.close()
        jobs.close()
