"""DICOMweb STOW-RS sender: the same contract as ichnode.dicom.sender.send.

One POST per job and destination (a multipart/related body of application/dicom parts). Each
instance counts as stored only when the response's ReferencedSOPSequence lists it without a
FailureReason (a Warning Reason is a success, like a B-status in DIMSE); FailedSOPSequence items and
instances the response does not mention are failures. A 409 Conflict (some failed) still carries the
per-instance answer, so what did arrive is recorded and not sent again.
"""
from __future__ import annotations

from typing import Callable

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from ichnode.config import Destination
from ichnode.dicom.sender import Outgoing
from ichnode.errors import SendError
from ichnode.log import get_logger

log = get_logger("ichnode.stow")


def send_stow(items: list[Outgoing], dest: Destination, *, timeout_s: float,
              on_sent: Callable[[str], None], calling_aet: str | None = None,
              session: requests.Session | None = None) -> None:
    """POST items to dest.url; raise SendError naming what failed. on_sent(sop_uid) per success.

    calling_aet is accepted for symmetry with sender.send (DICOMweb has no AE titles)."""
    if not items:
        return
    if not dest.url:
        raise SendError(f"destination {dest.name}: a stow destination needs a url")
    client = DICOMwebClient(dest.url, session=session, timeout=timeout_s,
                            chunk_size=1 << 40)  # one plain body: not every server takes chunked
    # Retries belong to the job's backoff (per-destination state), not to the HTTP client.
    client.set_http_retry_params(retry=False)
    datasets = [pydicom.dcmread(item.path) for item in items]
    try:
        response = client.store_instances(datasets)
    except requests.HTTPError as exc:
        response = _failure_body(exc)
        if response is None:
            status = exc.response.status_code if exc.response is not None else "no response"
            raise SendError(f"destination {dest.name} ({dest.url}): STOW-RS answered HTTP "
                            f"{status}") from exc
    except requests.RequestException as exc:
        raise SendError(f"destination {dest.name} ({dest.url}): STOW-RS request failed: "
                        f"{type(exc).__name__}") from exc
    stored, failures = _outcome(response)
    for item in items:
        if item.sop_uid in stored and item.sop_uid not in failures:
            on_sent(item.sop_uid)
    missing = [i.sop_uid for i in items if i.sop_uid not in stored or i.sop_uid in failures]
    if missing:
        first = missing[0]
        why = failures.get(first, "not in the response's ReferencedSOPSequence")
        raise SendError(f"destination {dest.name}: {len(missing)} instance(s) not stored "
                        f"({first}: {why})")
    log.info("sent", destination=dest.name, count=len(items), protocol="stow-rs")


def _failure_body(exc: requests.HTTPError) -> pydicom.Dataset | None:
    """The DICOM JSON body of a 409 (some or all instances failed), else None."""
    response = exc.response
    if response is None or response.status_code != 409 or not response.content:
        return None
    if response.headers.get("Content-Type", "").split(";")[0].strip() not in (
            "application/dicom+json", "application/json"):
        return None
    try:
        return pydicom.Dataset.from_json(response.json())
    except ValueError:
        return None


def _outcome(response: pydicom.Dataset) -> tuple[set[str], dict[str, str]]:
    """(SOP Instance UIDs referenced as stored, {SOP Instance UID: failure reason})."""
    stored, failures = set(), {}
    for item in response.get("ReferencedSOPSequence", None) or []:
        uid = str(item.get("ReferencedSOPInstanceUID", ""))
        reason = item.get("FailureReason")
        if reason is not None:
            failures[uid] = f"failure reason {int(reason):#06x}"
        elif uid:
            stored.add(uid)
    for item in response.get("FailedSOPSequence", None) or []:
        uid = str(item.get("ReferencedSOPInstanceUID", ""))
        reason = item.get("FailureReason")
        failures[uid] = "failed" if reason is None else f"failure reason {int(reason):#06x}"
    return stored, failures
