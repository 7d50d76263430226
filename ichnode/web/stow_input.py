"""STOW-RS input (PS3.18 10.5): `POST /dicomweb/studies` with `multipart/related;
type="application/dicom"`, one DICOM Part 10 instance per part, for PACS and routers that send by
DICOMweb instead of C-STORE.

Each instance goes through exactly what a C-STORE goes through (scp.StoreHandler.store_dataset:
header checks, disk watermarks, durable spool write, record), so it joins its series the same
way. The answer is PS3.18's: 200 when every instance was stored, 202 when some were not, 409 when
none was; the DICOM JSON body lists ReferencedSOPSequence and FailedSOPSequence with each
failure's DIMSE status as FailureReason. The web users (session or HTTP Basic) may send; the
body may be no larger than web.stow_max_mb (413 while it streams in, limits.py).
"""
from __future__ import annotations

from email.message import Message

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from ichnode.dicom.acceptor import Session
from ichnode.dicom.intake import split_part10
from ichnode.dicom.scp import STORAGE_CLASSES, StoreHandler
from ichnode.dicom.status import StoreStatus
from ichnode.log import get_logger
from ichnode.web.access import Auth, client_address
from ichnode.web.api import error, unauthorised

log = get_logger("ichnode.stow")

SOP_CLASS_NOT_SUPPORTED = 0x0122
_SUPPORTED = {str(uid) for uid in STORAGE_CLASSES}
DICOM_JSON = "application/dicom+json"


class UnsupportedMediaType(ValueError):
    """The request is not multipart/related of application/dicom (answered with 415)."""


def dicom_parts(body: bytes, content_type: str) -> list[bytes]:
    """The payloads of a multipart/related body whose type is application/dicom."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/related" or not boundary:
        raise UnsupportedMediaType("Content-Type must be multipart/related with a boundary")
    if str(header.get_param("type") or "application/dicom").lower() != "application/dicom":
        raise UnsupportedMediaType('only type="application/dicom" parts are accepted')
    chunks = body.split(b"--" + str(boundary).encode("ascii"))
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # the close delimiter
        head, found, payload = chunk.partition(b"\r\n\r\n")
        if not found:
            raise ValueError("a part without a header section")
        if b"content-type" in head.lower() and b"application/dicom" not in head.lower():
            raise ValueError("a part that is not application/dicom")
        parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    if not parts:
        raise ValueError("no parts in the body")
    return parts


def store_parts(handler: StoreHandler, session: Session, parts: list[bytes]) -> list[dict]:
    """Store each Part 10 payload; one outcome per part (status, reason, SOP class and instance)."""
    outcomes = []
    for data in parts:
        try:
            meta, stream = split_part10(data)
        except ValueError as exc:
            outcomes.append({"status": int(StoreStatus.CANNOT_UNDERSTAND), "reason": str(exc),
                             "sop_class": None, "sop_uid": None})
            continue
        sop_class = str(meta.MediaStorageSOPClassUID)
        sop_uid = str(meta.get("MediaStorageSOPInstanceUID", ""))
        if sop_class not in _SUPPORTED:
            status, reason = SOP_CLASS_NOT_SUPPORTED, "only CT Image Storage and Enhanced CT"
        else:
            status, reason = handler.store_dataset(session, stream, str(meta.TransferSyntaxUID),
                                                   sop_class)
        outcomes.append({"status": int(status), "reason": reason, "sop_class": sop_class,
                         "sop_uid": sop_uid})
    return outcomes


def stow_response(outcomes: list[dict]) -> JSONResponse:
    def reference(outcome: dict, failed: bool) -> dict:
        item = {}
        if outcome["sop_class"]:
            item["00081150"] = {"vr": "UI", "Value": [outcome["sop_class"]]}
        if outcome["sop_uid"]:
            item["00081155"] = {"vr": "UI", "Value": [outcome["sop_uid"]]}
        if failed:
            item["00081197"] = {"vr": "US", "Value": [outcome["status"]]}
        return item

    stored = [reference(o, False) for o in outcomes if o["status"] == StoreStatus.SUCCESS]
    failed = [reference(o, True) for o in outcomes if o["status"] != StoreStatus.SUCCESS]
    body = {}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    status = 200 if not failed else 409 if not stored else 202
    return JSONResponse(body, status_code=status, media_type=DICOM_JSON)


def stow_endpoint(handler: StoreHandler, auth: Auth):
    """The body limit (web.stow_max_mb) is enforced by limits.BodyLimit while the body streams
    in, chunked or not, before this reads it."""
    async def stow(request: Request):
        user, _ = await run_in_threadpool(auth.user, request)  # Basic hashes: off the event loop
        if user is None:
            return unauthorised()
        body = await request.body()
        try:
            parts = dicom_parts(body, request.headers.get("content-type", ""))
        except UnsupportedMediaType as exc:
            return error(415, str(exc))
        except ValueError as exc:
            return error(400, str(exc))
        session = Session(address=client_address(request), tls=request.url.scheme == "https",
                          calling_aet="STOW-RS")
        outcomes = await run_in_threadpool(store_parts, handler, session, parts)
        refused = sum(o["status"] != StoreStatus.SUCCESS for o in outcomes)
        handler.audit.record("stow_request", user=user, address=session.address,
                             instances=len(outcomes), refused=refused)
        log.info("stow_request", user=user, instances=len(outcomes), refused=refused)
        return stow_response(outcomes)

    return stow
