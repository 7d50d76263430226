"""The JSON API of the worklist: items as JSON and the OpenAPI document (the handlers, whose
docstrings are its paths, are in api_handlers.py).

Authentication (access.py): the page's session cookie, or HTTP Basic with a `web.users` account
(for scripts), both under the login throttle (throttle.py). A POST authenticated by cookie must say
it is not a plain form (JSON content type or an X-Requested-With header): a cross-site form cannot,
so the cookie cannot be abused (CSRF).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.schemas import SchemaGenerator

from ichnode import __version__
from ichnode.domain import Priority
from ichnode.results.codes import NOTICE
from ichnode.store.outbox import Delivery, DeliveryState


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def api_item(row: dict, now: float | None = None) -> dict:
    """A worklist row as the API shows it (patient identifiers included: authenticated only)."""
    now = time.time() if now is None else now
    job = row["job_id"]

    def mark(prefix: str):
        return None if row[f"{prefix}_at"] is None else {"by": row[f"{prefix}_by"],
                                                           "at": iso(row[f"{prefix}_at"])}

    return {
        "job": job, "priority": row["priority"], "priority_rank": row["priority_rank"],
        "reason": row["reason"], "flags": row["flags"] or [], "volumes_ml": row["volumes"] or {},
        "total_ml": row["total_ml"], "abc2_ml": row["abc2_ml"], "abc2_ratio": row["abc2_ratio"],
        "lesion_count": row["lesion_count"], "iph_location": row["iph_location"],
        "probabilities": row["probabilities"] or {}, "models": row["models"] or [],
        "patient_name": row["patient_name"], "patient_id": row["patient_id"],
        "accession": row["accession"], "study_description": row["study_description"],
        "series_description": row["series_description"], "study_date": row["study_date"],
        "study_time": row["study_time"], "modality": row["modality"],
        "scanner_model": row["scanner_model"], "slices": row["slices"],
        "study_uid": row["study_uid"], "series_uid": row["series_uid"],
        "arrived": iso(row["arrived"]), "age_s": round(max(0.0, now - row["arrived"]), 1),
        "analysed": iso(row["analysed"]), "job_state": row.get("job_state"),
        "results_delivered": row["results_delivered"],
        "acknowledged": mark("acknowledged"), "dismissed": mark("dismissed"),
        "thumbnail_url": f"/images/{job}/{row['thumbnail']}" if row["thumbnail"] else None,
        "key_image_urls": [f"/images/{job}/{name}" for name in row["key_images"] or []],
        "study_url": f"/study/{job}",
    }


def api_notification(n: Delivery) -> dict:
    return {"channel": n.channel, "state": n.state.value, "attempts": n.attempts,
            "sent_at": iso(n.sent_at), "time_to_notification_s": n.time_to_delivery_s,
            "ack_code": n.ack_code, "error": n.error}


def unauthorised() -> JSONResponse:
    return JSONResponse({"error": "authentication required"}, status_code=401)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def csrf_safe_post(request: Request, how: str) -> bool:
    if how == "basic":
        return True
    return (request.headers.get("content-type", "").startswith("application/json")
            or request.headers.get("x-requested-with") is not None)


_NULLABLE_NUMBER = {"type": ["number", "null"]}
_NULLABLE_STRING = {"type": ["string", "null"]}
_MARK = {"oneOf": [{"type": "null"}, {
    "type": "object", "required": ["by", "at"], "additionalProperties": False,
    "properties": {"by": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}}]}

ITEM_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["job", "priority", "priority_rank", "reason", "flags", "volumes_ml", "total_ml",
                 "abc2_ml", "models", "accession", "series_description", "arrived", "age_s",
                 "acknowledged", "dismissed", "thumbnail_url", "key_image_urls", "study_url"],
    "properties": {
        "job": {"type": "integer"},
        "priority": {"type": "string", "enum": sorted(p.value for p in Priority)},
        "priority_rank": {"type": "integer", "minimum": 0, "maximum": 3},
        "reason": _NULLABLE_STRING,
        "flags": {"type": "array", "items": {"type": "string",
                                             "enum": ["ICH", "IPH", "IVH", "SAH", "SDH", "EDH",
                                                      "EXTRA"]}},
        "volumes_ml": {"type": "object", "additionalProperties": {"type": "number"}},
        "total_ml": _NULLABLE_NUMBER, "abc2_ml": _NULLABLE_NUMBER, "abc2_ratio": _NULLABLE_NUMBER,
        "lesion_count": {"type": ["integer", "null"]}, "iph_location": _NULLABLE_STRING,
        "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
        "models": {"type": "array", "items": {
            "type": "object", "required": ["name", "version"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}}}},
        "patient_name": _NULLABLE_STRING, "patient_id": _NULLABLE_STRING,
        "accession": _NULLABLE_STRING, "study_description": _NULLABLE_STRING,
        "series_description": _NULLABLE_STRING, "study_date": _NULLABLE_STRING,
        "study_time": _NULLABLE_STRING, "modality": _NULLABLE_STRING,
        "scanner_model": _NULLABLE_STRING, "slices": {"type": ["integer", "null"]},
        "study_uid": _NULLABLE_STRING, "series_uid": _NULLABLE_STRING,
        "arrived": {"type": "string", "format": "date-time"}, "age_s": {"type": "number"},
        "analysed": {"type": "string", "format": "date-time"},
        "job_state": _NULLABLE_STRING, "results_delivered": {"type": "boolean"},
        "acknowledged": _MARK, "dismissed": _MARK,
        "thumbnail_url": _NULLABLE_STRING,
        "key_image_urls": {"type": "array", "items": {"type": "string"}},
        "study_url": {"type": "string"},
        "notifications": {"type": "array", "items": {"$ref": "#/components/schemas/Notification"}},
    },
}

BASE_SCHEMA = {
    "openapi": "3.1.0",
    "info": {"title": "ichnode worklist API", "version": __version__,
             "description": f"ICH triage worklist. {NOTICE}."},
    "security": [{"basic": []}, {"session": []}],
    "components": {
        "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic"},
            "session": {"type": "apiKey", "in": "cookie", "name": "ichnode_session"},
        },
        "schemas": {
            "WorklistItem": ITEM_SCHEMA,
            "Notification": {
                "type": "object", "additionalProperties": False,
                "required": ["channel", "state", "attempts"],
                "properties": {
                    "channel": {"type": "string", "enum": ["mllp", "webhook"]},
                    "state": {"type": "string", "enum": [s.value for s in DeliveryState]},
                    "attempts": {"type": "integer"},
                    "sent_at": {"type": ["string", "null"], "format": "date-time"},
                    "time_to_notification_s": _NULLABLE_NUMBER,
                    "ack_code": _NULLABLE_STRING, "error": _NULLABLE_STRING}},
            "Worklist": {
                "type": "object", "additionalProperties": False,
                "required": ["version", "generated", "count", "items", "notice"],
                "properties": {
                    "version": {"type": "string"},
                    "generated": {"type": "string", "format": "date-time"},
                    "count": {"type": "integer"}, "notice": {"type": "string"},
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/WorklistItem"}}}},
            "Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                      "properties": {"error": {"type": "string"}}},
        },
    },
}


def schema_generator() -> SchemaGenerator:
    return SchemaGenerator(BASE_SCHEMA)
