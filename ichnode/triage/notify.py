"""Notification messages: HL7 v2.5.1 ORU^R01 over MLLP (with ACK handling) and a JSON webhook.

Each notification is an outbox row (ichnode.store.outbox), carried by the "mllp" and "webhook"
channels (ichnode.delivery) and retried like every delivery (listener down, ACK AE, HTTP 5xx).
An AR ACK or an HTTP 4xx is final (DeliveryError.retry False).

The ORU carries the patient's ID and name in PID (the RIS needs them); the webhook body does not
(accession number and UIDs only). Logs carry job ids and channel names, never a row's content.

Messages are UTF-8 (MSH-18 "UNICODE UTF-8"): names such as MÜLLER go out as text; only the HL7
delimiters and control characters are escaped. MLLP runs over TLS when notify.mllp.tls is given.
"""
from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from datetime import datetime

import hl7

from ichnode import __version__
from ichnode.config import MllpConfig
from ichnode.domain import ALL_CLASSES
from ichnode.errors import DeliveryError
from ichnode.results.codes import NOTICE
from ichnode.tls_client import client_context, describe as describe_tls, server_name

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
CHARSET = "UNICODE UTF-8"  # MSH-18; HL7 table 0211
# HL7 v2 section 2.7: the delimiters of MSH-1/MSH-2 and the escape character; line breaks as \.br\.
_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\",
            "\r": "\\.br\\", "\n": "\\.br\\"}
ABNORMAL_FLAG = {"critical": "AA", "high": "A", "routine": "N", "not analysed": ""}


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
            raise DeliveryError("connection closed before a complete MLLP frame")
        buffer += chunk
        if len(buffer) > limit:
            raise DeliveryError("MLLP frame too long")
    start = buffer.find(SB)
    return buffer[start + 1 if start >= 0 else 0:buffer.index(EB)]


def send_mllp(message: hl7.Message, host: str, port: int, timeout_s: float, tls=None) -> str:
    """Send one message, wait for its ACK; returns the ACK code (AA or CA), raises DeliveryError.
    tls: a ClientTls block (MLLP over TLS) or None."""
    control_id = str(message.segment("MSH")(10))
    where = f"MLLP {host}:{port}" + (" over TLS" if tls is not None else "")
    try:
        context = None if tls is None else client_context(tls)
    except (OSError, ValueError) as exc:  # files changed since the configuration was loaded
        raise DeliveryError(f"{where}: TLS set-up failed: {exc}") from exc
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            sock = raw if context is None else \
                context.wrap_socket(raw, server_hostname=server_name(tls, host))
            with sock:
                sock.sendall(frame(message))
                data = read_frame(sock)
    except ssl.SSLError as exc:
        raise DeliveryError(f"{where}: {describe_tls(exc)}") from exc
    except OSError as exc:
        raise DeliveryError(f"{where}: {exc}") from exc
    try:
        ack = hl7.parse(data.decode("utf-8", errors="replace"))
        msa = ack.segment("MSA")
    except (KeyError, IndexError, ValueError, hl7.ParseException) as exc:
        raise DeliveryError(f"unreadable ACK: {exc}") from exc
    code, ref = str(msa(1)), str(msa(2))
    text = str(msa(3)) if len(msa) > 3 else ""
    if ref != control_id:
        raise DeliveryError(f"ACK refers to message {ref!r}, not {control_id!r}", ack_code=code)
    if code in ("AA", "CA"):
        return code
    if code in ("AR", "CR"):
        raise DeliveryError(f"message rejected ({code}) {text}".strip(), retry=False, ack_code=code)
    raise DeliveryError(f"application error ({code}) {text}".strip(), ack_code=code)


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
        raise DeliveryError(f"webhook answered HTTP {exc.code}", retry=not final) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"webhook: {getattr(exc, 'reason', exc)}") from exc
