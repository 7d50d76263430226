"""Notifications: HL7 v2.5.1 ORU^R01 over MLLP (with ACK handling) and a JSON webhook.

Each notification is a row in the worklist store (state pending -> sent | failed) so it survives a
restart; a worker thread sends the due ones and retries with backoff (listener down, ACK AE,
HTTP 5xx). An AR ACK or an HTTP 4xx is final. Sent rows record the time to notification: first
image received -> notification acknowledged.

The ORU carries the patient's ID and name in PID (the RIS needs them); the webhook body does not
(accession number and UIDs only). Logs carry job ids and channel names, never a row's content.

Messages are UTF-8 (MSH-18 "UNICODE UTF-8"): names such as MÜLLER go out as text; only the HL7
delimiters and control characters are escaped. MLLP runs over TLS when notify.mllp.tls is given.
"""
from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime

import hl7

from ichnode import __version__
from ichnode.config import MllpConfig, NotifyConfig
from ichnode.domain import ALL_CLASSES
from ichnode.log import get_logger
from ichnode.results.codes import NOTICE
from ichnode.retry import backoff_s
from ichnode.tls_client import client_context, describe as describe_tls, server_name
from ichnode.triage.worklist import NotificationState

log = get_logger("ichnode.notify")
SB, EB, CR = b"\x0b", b"\x1c", b"\r"
CHARSET = "UNICODE UTF-8"  # MSH-18; HL7 table 0211
# HL7 v2 section 2.7: the delimiters of MSH-1/MSH-2 and the escape character; line breaks as \.br\.
_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\",
            "\r": "\\.br\\", "\n": "\\.br\\"}
ABNORMAL_FLAG = {"critical": "AA", "high": "A", "routine": "N", "not analysed": ""}


class NotifyError(Exception):
    def __init__(self, message: str, retry: bool = True, ack_code: str | None = None):
        super().__init__(message)
        self.retry, self.ack_code = retry, ack_code


def _esc(value) -> str:
    """A field's text, HL7-escaped. Other characters stay as they are (the message is UTF-8), but
    for control characters (\\Xhh\\, hex of their UTF-8 bytes: none can break the MLLP frame) and
    lone surrogates (U+FFFD)."""
    if value is None:
        return ""
    out = []
    for c in str(value).replace("\r\n", "\r"):
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c < " " or "\x7f" <= c < "\xa0":
            out.append(f"\\X{c.encode('utf-8').hex().upper()}\\")
        elif "\ud800" <= c <= "\udfff":
            out.append("\ufffd")
        else:
            out.append(c)
    return "".join(out)


def _person_name(dicom_pn: str | None) -> str:
    # DICOM PN and HL7 XPN both put family^given^middle^prefix^suffix in components. A PN has up to
    # three groups (alphabetic=ideographic=phonetic); the XPN gets the first that is not empty.
    group = next((g for g in (dicom_pn or "").split("=") if g.strip("^ ")), "")
    return "^".join(_esc(part) for part in group.split("^"))


def _ts(epoch: float | None) -> str:
    return "" if epoch is None else datetime.fromtimestamp(epoch).strftime("%Y%m%d%H%M%S")


def build_oru(row: dict, mllp: MllpConfig, control_id: str, now: float | None = None) -> hl7.Message:
    """ORU^R01 for one worklist row: priority, reason, volumes, flags, probabilities, models."""
    now = time.time() if now is None else now
    priority = row["priority"]
    msh = ["MSH", "^~\\&", _esc(mllp.sending_application), _esc(mllp.sending_facility),
           _esc(mllp.receiving_application), _esc(mllp.receiving_facility), _ts(now), "",
           "ORU^R01^ORU_R01", _esc(control_id), "P", "2.5.1", "", "", "", "", "", CHARSET]
    pid = ["PID", "1", "", f"{_esc(row.get('patient_id'))}", "", _person_name(row.get("patient_name"))]
    study_dt = (row.get("study_date") or "") + (row.get("study_time") or "").split(".")[0]
    obr = ["OBR", "1", "", _esc(row.get("accession")), "ICH-TRIAGE^AI ICH triage^L", "", "",
           _esc(study_dt)] + [""] * 14 + [_ts(row.get("analysed")), "", "CT", "P"]
    obx: list[list[str]] = []

    def add(kind: str, code: str, text: str, value, units: str = "", flag: str = "",
            coding: str = "L") -> None:
        obx.append(["OBX", str(len(obx) + 1), kind, f"{code}^{_esc(text)}^{coding}", "",
                    value if kind == "CWE" else _esc(value), units, "", flag, "", "", "P"])

    add("ST", "PRIORITY", "AI triage priority", priority, flag=ABNORMAL_FLAG.get(priority, ""))
    add("TX", "REASON", "AI triage reason", row.get("reason") or "")
    ml = "mL^milliliter^UCUM"
    if row.get("total_ml") is not None:
        add("NM", "VOL_TOTAL", "Hemorrhage volume, segmented", f"{row['total_ml']:.2f}", ml)
    if row.get("abc2_ml") is not None:
        add("NM", "VOL_ABC2", "Largest lesion volume, ABC/2", f"{row['abc2_ml']:.2f}", ml)
    volumes, probabilities = row.get("volumes") or {}, row.get("probabilities") or {}
    flags = set(row.get("flags") or [])
    for name in ALL_CLASSES:
        if name in volumes:
            add("NM", f"VOL_{name}", f"{name} volume, segmented", f"{volumes[name]:.2f}", ml)
    for name in ALL_CLASSES:
        if name in volumes or name in probabilities or name in flags:
            yes = name in flags
            add("CWE", f"FLAG_{name}", f"{name} present", "Y^Yes^HL70136" if yes else "N^No^HL70136",
                flag="A" if yes else "N")
    for name, p in sorted(probabilities.items()):
        add("NM", f"PROB_{name.upper()}", f"Probability of {name}", f"{p:.3f}")
    if row.get("iph_location"):
        add("ST", "IPH_LOCATION", "IPH location", row["iph_location"])
    for model in row.get("models") or []:
        add("ST", "ALGORITHM", "Algorithm name and version", f"{model['name']} {model['version']}")
    add("ST", "RESULTS_SENT", "Result objects delivered to PACS",
        "yes" if row.get("results_delivered") else "no")
    add("ST", "110180", "Study Instance UID", row.get("study_uid") or "", coding="DCM")
    add("ST", "NOTICE", "Notice", NOTICE)
    segments = [msh, pid, obr, *obx]
    return hl7.parse("\r".join("|".join(s) for s in segments) + "\r")


def frame(message: str | hl7.Message) -> bytes:
    return SB + str(message).encode("utf-8") + EB + CR


def read_frame(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """One MLLP frame's content (between <SB> and <EB>)."""
    buffer = b""
    while EB not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise NotifyError("connection closed before a complete MLLP frame")
        buffer += chunk
        if len(buffer) > limit:
            raise NotifyError("MLLP frame too long")
    start = buffer.find(SB)
    return buffer[start + 1 if start >= 0 else 0:buffer.index(EB)]


def send_mllp(message: hl7.Message, host: str, port: int, timeout_s: float, tls=None) -> str:
    """Send one message, wait for its ACK; returns the ACK code (AA or CA), raises NotifyError.
    tls: a ClientTls block (MLLP over TLS) or None."""
    control_id = str(message.segment("MSH")(10))
    where = f"MLLP {host}:{port}" + (" over TLS" if tls is not None else "")
    try:
        context = None if tls is None else client_context(tls)
    except (OSError, ValueError) as exc:  # files changed since the configuration was loaded
        raise NotifyError(f"{where}: TLS set-up failed: {exc}") from exc
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            sock = raw if context is None else \
                context.wrap_socket(raw, server_hostname=server_name(tls, host))
            with sock:
                sock.sendall(frame(message))
                data = read_frame(sock)
    except ssl.SSLError as exc:
        raise NotifyError(f"{where}: {describe_tls(exc)}") from exc
    except OSError as exc:
        raise NotifyError(f"{where}: {exc}") from exc
    try:
        ack = hl7.parse(data.decode("utf-8", errors="replace"))
        msa = ack.segment("MSA")
    except (KeyError, IndexError, ValueError, hl7.ParseException) as exc:
        raise NotifyError(f"unreadable ACK: {exc}") from exc
    code, ref = str(msa(1)), str(msa(2))
    text = str(msa(3)) if len(msa) > 3 else ""
    if ref != control_id:
        raise NotifyError(f"ACK refers to message {ref!r}, not {control_id!r}", ack_code=code)
    if code in ("AA", "CA"):
        return code
    if code in ("AR", "CR"):
        raise NotifyError(f"message rejected ({code}) {text}".strip(), retry=False, ack_code=code)
    raise NotifyError(f"application error ({code}) {text}".strip(), ack_code=code)


def webhook_body(row: dict) -> dict:
    """JSON for the webhook: findings and identifiers of the study, no patient name or ID."""
    keys = ("priority", "reason", "flags", "total_ml", "abc2_ml", "abc2_ratio", "iph_location",
            "volumes", "probabilities", "models", "accession", "study_uid", "series_uid",
            "series_description", "arrived", "analysed", "results_delivered")
    return {"event": "ich-triage", "job": row["job_id"], **{k: row.get(k) for k in keys},
            "notice": NOTICE, "sender": f"ichnode {__version__}"}


def post_webhook(url: str, body: dict, timeout_s: float) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": f"ichnode/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        final = 400 <= exc.code < 500 and exc.code not in (408, 429)
        raise NotifyError(f"webhook answered HTTP {exc.code}", retry=not final) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise NotifyError(f"webhook: {getattr(exc, 'reason', exc)}") from exc


class Notifier:
    def __init__(self, config: NotifyConfig, worklist, metrics=None):
        self.config, self.worklist, self.metrics = config, worklist, metrics
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def channels(self) -> list[str]:
        return ([] if self.config.mllp is None else ["mllp"]) + \
               ([] if self.config.webhook_url is None else ["webhook"])

    def enqueue(self, job_id: int) -> int:
        """Queue one notification per channel for a job's row; returns how many."""
        row = self.worklist.get(job_id)
        if row is None or row["priority"] not in self.config.priorities:
            return 0
        for channel in self.channels:
            self.worklist.add_notification(job_id, channel)
        self._wake.set()
        return len(self.channels)

    def start(self) -> "Notifier":
        if self.channels and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ichnode-notify", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.timeout_s + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:  # noqa: BLE001 - the worker must keep running
                log.exception("notify_loop_error")
            due = self.worklist.next_notification_at()
            wait = 30.0 if due is None else min(30.0, max(0.0, due - time.time()))
            self._wake.wait(wait)
            self._wake.clear()

    def run_due(self, now: float | None = None) -> int:
        """Send every due notification once; returns how many were tried."""
        due = self.worklist.due_notifications(time.time() if now is None else now)
        for notification in due:
            if self._stop.is_set():
                break
            self._deliver(notification)
        return len(due)

    def _deliver(self, n: dict) -> None:
        row = self.worklist.get(n["job_id"])
        attempts = n["attempts"] + 1
        control_id = f"ICH{n['job_id']}-{n['id']}-{attempts}"
        try:
            if row is None:
                raise NotifyError("worklist row is gone", retry=False)
            if n["channel"] == "mllp":
                message = build_oru(row, self.config.mllp, control_id)
                ack = send_mllp(message, self.config.mllp.host, self.config.mllp.port,
                                self.config.timeout_s, tls=self.config.mllp.tls)
            else:
                status = post_webhook(self.config.webhook_url, webhook_body(row), self.config.timeout_s)
                ack, control_id = f"HTTP {status}", None
        except NotifyError as exc:
            self._failed(n, attempts, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not spin the worker: back off, give up
            log.exception("notification_crashed", job=n["job_id"], channel=n["channel"])
            self._failed(n, attempts, NotifyError(f"{type(exc).__name__}: {exc}"))
            return
        sent = time.time()
        ttn = sent - row["arrived"]
        self.worklist.update_notification(n["id"], state=NotificationState.SENT.value, attempts=attempts, sent_at=sent,
                                          time_to_notification_s=ttn, ack_code=ack,
                                          control_id=control_id, error=None)
        if self.metrics is not None:
            self.metrics.notifications.labels(channel=n["channel"], result="sent").inc()
            self.metrics.time_to_notification.labels(channel=n["channel"]).observe(ttn)
            self.metrics.stage.labels(stage="notify").observe(max(0.0, sent - n["created"]))
        log.info("notification_sent", job=n["job_id"], channel=n["channel"], attempts=attempts,
                 ack=ack, time_to_notification_s=round(ttn, 3))

    def _failed(self, n: dict, attempts: int, exc: NotifyError) -> None:
        final = not exc.retry or attempts >= self.config.max_attempts
        fields = dict(attempts=attempts, error=str(exc)[:500], ack_code=exc.ack_code)
        if final:
            self.worklist.update_notification(n["id"], state=NotificationState.FAILED.value, **fields)
            log.error("notification_failed", job=n["job_id"], channel=n["channel"],
                      attempts=attempts, error=str(exc)[:200])
        else:
            delay = backoff_s(attempts, self.config.backoff_initial_s, self.config.backoff_max_s)
            self.worklist.update_notification(n["id"], next_attempt=time.time() + delay, **fields)
            log.warning("notification_retry", job=n["job_id"], channel=n["channel"],
                        attempt=attempts, delay_s=round(delay, 2), error=str(exc)[:200])
        if self.metrics is not None:
            self.metrics.notifications.labels(channel=n["channel"],
                                              result="failed" if final else "retry").inc()
            if final:
                self.metrics.failure("notify", exc.ack_code or "gave up")
