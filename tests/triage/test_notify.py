"""HL7 ORU^R01 over a real MLLP listener (ACK AA / AE / AR, listener down then up) and a real
HTTP webhook receiver."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hl7
import pytest

from ichnode.config import MllpConfig, NotifyConfig
from ichnode.triage.notify import build_oru
from tests.helpers import free_port, wait_until
from tests.triage.mllp import MllpListener
from tests.triage.stores import Notifying


def notifier(stores, port=None, webhook=None, **kw):
    mllp = MllpConfig(host="127.0.0.1", port=port, receiving_application="RIS") if port else None
    config = NotifyConfig(mllp=mllp, webhook_url=webhook, backoff_initial_s=0.05,
                          backoff_max_s=0.2, timeout_s=5, **kw)
    return Notifying(stores, config)


def obx(message, code):
    for segment in message.segments("OBX"):
        if str(segment(3)(1)(1)) == code:
            return segment
    raise KeyError(code)


def test_oru_carries_priority_findings_and_identifiers(stores):
    row = stores.worklist.get(stores.job())
    message = build_oru(row, MllpConfig(host="h", port=1, sending_facility="ER"), "CTRL1", now=0)
    parsed = hl7.parse(str(message))  # what a receiver sees
    assert str(parsed.segment("MSH")(9)) == "ORU^R01^ORU_R01"
    assert str(parsed.segment("MSH")(10)) == "CTRL1" and str(parsed.segment("MSH")(12)) == "2.5.1"
    assert str(parsed.segment("PID")(3)) == "PID-123"
    assert str(parsed.segment("PID")(5)(1)(1)) == "DOE" and str(parsed.segment("PID")(5)(1)(2)) == "JANE"
    assert str(parsed.segment("OBR")(3)) == "ACC42"
    assert str(parsed.segment("OBR")(7)) == "20250102101500"
    assert str(obx(parsed, "PRIORITY")(5)) == "critical" and str(obx(parsed, "PRIORITY")(8)) == "AA"
    # The "|" in the reason is escaped on the wire and comes back intact.
    assert parsed.unescape(str(obx(parsed, "REASON")(5))) == row["reason"]
    assert float(str(obx(parsed, "VOL_TOTAL")(5))) == pytest.approx(42.0)
    assert str(obx(parsed, "VOL_TOTAL")(6)(1)(1)) == "mL"
    assert float(str(obx(parsed, "VOL_ABC2")(5))) == pytest.approx(39.5)
    assert str(obx(parsed, "FLAG_ICH")(5)(1)(1)) == "Y"
    assert float(str(obx(parsed, "PROB_ANY")(5))) == pytest.approx(0.93)
    assert str(obx(parsed, "ALGORITHM")(5)) == "ichnode-classical-hu 0.1.0"
    assert str(obx(parsed, "110180")(5)) == "1.2.3"
    assert "not for diagnostic use" in str(obx(parsed, "NOTICE")(5))


def test_ack_aa_marks_sent_with_time_to_notification(stores):
    job = stores.job()
    with MllpListener() as listener:
        n = notifier(stores, listener.port)
        assert n.enqueue(job) == 1
        assert n.run_due() == 1
    (sent,) = stores.outbox.notifications(job)
    assert (sent.state, sent.ack_code, sent.attempts) == ("sent", "AA", 1)
    assert sent.time_to_delivery_s == pytest.approx(
        sent.sent_at - stores.worklist.get(job)["arrived"])
    (message,) = listener.messages
    assert str(message.segment("MSH")(10)) == sent.control_id
    assert str(message.segment("MSH")(5)) == "RIS"
    assert b'ichnode_time_to_notification_seconds_count{channel="mllp"} 1.0' in n.metrics.render()


def test_application_error_is_retried_and_reject_is_final(stores):
    retried, rejected = stores.job(), stores.job()
    with MllpListener(codes=("AE", "AA")) as listener:
        n = notifier(stores, listener.port)
        n.enqueue(retried)
        n.run_due()
        (first,) = stores.outbox.notifications(retried)
        assert (first.state, first.ack_code, first.attempts) == ("pending", "AE", 1)
        n.run_due(now=time.time() + 60)
        assert stores.outbox.notifications(retried)[0].state == "sent"
        listener.codes = ["AR"]
        n.enqueue(rejected)
        n.run_due()
        n.run_due(now=time.time() + 60)
    (final,) = stores.outbox.notifications(rejected)
    assert (final.state, final.ack_code, final.attempts) == ("failed", "AR", 1)
    assert len(listener.messages) == 3  # AR is not retried
    assert b'ichnode_failures_total{reason="AR",stage="notify"} 1.0' in n.metrics.render()


def test_listener_down_at_first_then_up_is_retried_with_backoff(stores):
    job, port = stores.job(), free_port()
    n = notifier(stores, port).start()
    try:
        n.enqueue(job)
        failed = wait_until(lambda: [x for x in stores.outbox.notifications(job) if x.attempts],
                            20, what="the first (failing) attempt")
        assert failed[0].state == "pending" and "refused" in failed[0].error.lower()
        with MllpListener(port=port) as listener:
            sent = wait_until(lambda: [x for x in stores.outbox.notifications(job)
                                       if x.state == "sent"], 20, what="the retry to get through")
    finally:
        n.stop()
    assert sent[0].attempts >= 2 and sent[0].error is None
    assert len(listener.messages) == 1


class _Receiver(BaseHTTPRequestHandler):
    statuses: list[int] = []
    bodies: list[dict] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(json.loads(body))
        status = self.statuses.pop(0) if self.statuses else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_retries_server_errors_and_sends_no_patient_identifiers(stores):
    job = stores.job()
    _Receiver.statuses, _Receiver.bodies = [503], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        n = notifier(stores, webhook=f"http://127.0.0.1:{server.server_address[1]}/hook")
        n.enqueue(job)
        n.run_due()
        assert stores.outbox.notifications(job)[0].state == "pending"
        n.run_due(now=time.time() + 60)
    finally:
        server.shutdown()
        server.server_close()
    (sent,) = stores.outbox.notifications(job)
    assert (sent.state, sent.ack_code, sent.attempts) == ("sent", "HTTP 200", 2)
    body = _Receiver.bodies[-1]
    assert body["priority"] == "critical" and body["accession"] == "ACC42" and body["job"] == job
    assert "DOE" not in json.dumps(body) and "PID-123" not in json.dumps(body)


def test_priorities_filter_what_is_sent(stores):
    routine = stores.job(priority="routine", priority_rank=3)
    n = notifier(stores, 9, priorities=("critical", "high"))
    assert n.enqueue(routine) == 0
    assert stores.outbox.notifications(routine) == []
