"""The JSON API's handlers. Their docstrings are the OpenAPI document's paths (api.py has its
components); authentication is the route table's (guard.py: API, API_ACTION)."""
from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ichnode.config import WebConfig
from ichnode.results.codes import BANNER_TEXT
from ichnode.web.actions import NotOnWorklist, UnknownAction, apply_action
from ichnode.web.api import api_item, api_notification, error, iso, schema_generator
from ichnode.web.guard import Caller


class WorklistApi:
    def __init__(self, config: WebConfig, worklist, outbox):
        self.config, self.worklist, self.outbox = config, worklist, outbox
        self.schema = schema_generator()

    def worklist_items(self, request: Request, caller: Caller) -> Response:
        """
        summary: The worklist, by priority (critical, high, not analysed, routine) then arrival;
          acknowledged or dismissed rows older than web.closed_after_days are left out.
        parameters:
          - {name: include_dismissed, in: query, required: false, schema: {type: string, enum: ["0", "1"]}}
        responses:
          "200": {description: The worklist., content: {application/json: {schema: {$ref: "#/components/schemas/Worklist"}}}}
          "401": {description: Not logged in., content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
        """
        now = time.time()
        items = self.worklist.items(request.query_params.get("include_dismissed") == "1",
                                    closed_days=self.config.closed_after_days)
        return JSONResponse({"version": self.worklist.version(), "generated": iso(now),
                             "count": len(items), "items": [api_item(r, now) for r in items],
                             "notice": BANNER_TEXT})

    def worklist_item(self, request: Request, caller: Caller) -> Response:
        """
        summary: One worklist item, with its notifications.
        parameters:
          - {name: job, in: path, required: true, schema: {type: integer}}
        responses:
          "200": {description: The item., content: {application/json: {schema: {$ref: "#/components/schemas/WorklistItem"}}}}
          "401": {description: Not logged in., content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
          "404": {description: No such job on the worklist., content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
        """
        row = self.worklist.get(request.path_params["job"])
        if row is None:
            return error(404, "no such job on the worklist")
        item = api_item(row)
        item["notifications"] = [api_notification(n) for n in self.outbox.notifications(row["job_id"])]
        return JSONResponse(item)

    def worklist_action(self, request: Request, caller: Caller) -> Response:
        """
        summary: Acknowledge or dismiss a worklist item as the authenticated user (now).
        description: With the session cookie, send Content-Type application/json (CSRF guard).
        parameters:
          - {name: job, in: path, required: true, schema: {type: integer}}
          - {name: action, in: path, required: true, schema: {type: string, enum: [acknowledge, dismiss, restore]}}
        responses:
          "200": {description: The item after the change., content: {application/json: {schema: {$ref: "#/components/schemas/WorklistItem"}}}}
          "401": {description: Not logged in., content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
          "403": {description: Cookie-authenticated request without a JSON content type., content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
          "404": {description: No such job on the worklist., content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
        """
        job, action = request.path_params["job"], request.path_params["action"]
        try:
            row = apply_action(self.worklist, job, action, caller.user)
        except UnknownAction:
            return error(404, f"unknown action {action!r}")
        except NotOnWorklist:
            return error(404, "no such job on the worklist")
        return JSONResponse(api_item(row))

    def openapi(self, request: Request) -> Response:
        return JSONResponse(self.schema.get_schema(routes=request.app.routes))
