"""The worklist pages (server-rendered, session only), the study page's action forms and the
key images. Authentication is the route table's (guard.py): each handler gets its Caller."""
from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ichnode.config import WebConfig
from ichnode.web.actions import NotOnWorklist, UnknownAction, apply_action
from ichnode.web.forms import safe_next
from ichnode.web.guard import Caller
from ichnode.web.templating import render

IMAGE_NAME = re.compile(r"^(thumbnail|key_\d{4})\.png$")


class Pages:
    def __init__(self, config: WebConfig, worklist, outbox, templates: Jinja2Templates, results_dir: Path):
        self.config, self.worklist, self.outbox = config, worklist, outbox
        self.templates, self.results_dir = templates, results_dir

    def _items(self, show_all: bool) -> list[dict]:
        return self.worklist.items(show_all, closed_days=self.config.closed_after_days)

    def worklist_page(self, request: Request, caller: Caller) -> Response:
        show_all = request.query_params.get("all") == "1"
        return render(self.templates, request, "worklist.html", caller.session,
                      items=self._items(show_all), show_all=show_all,
                      version=self.worklist.version())

    def worklist_rows(self, request: Request, caller: Caller) -> Response:
        """The rows alone: the worklist page swaps them in when the version changes."""
        show_all = request.query_params.get("all") == "1"
        return render(self.templates, request, "_rows.html", caller.session,
                      items=self._items(show_all), show_all=show_all)

    def study_page(self, request: Request, caller: Caller) -> Response:
        row = self.worklist.get(request.path_params["job"])
        if row is None:
            return Response("no such study on the worklist", status_code=404)
        return render(self.templates, request, "study.html", caller.session, item=row,
                      notifications=self.outbox.notifications(row["job_id"]))

    async def study_action(self, request: Request, caller: Caller) -> Response:
        job, action = request.path_params["job"], request.path_params["action"]
        try:
            apply_action(self.worklist, job, action, caller.user)
        except UnknownAction:
            return Response("unknown action", status_code=404)
        except NotOnWorklist:
            return Response("no such study on the worklist", status_code=404)
        next_url = safe_next(str(caller.form.get("next", f"/study/{job}")))
        return RedirectResponse(next_url, status_code=303)

    def image(self, request: Request, caller: Caller) -> Response:
        job, name = request.path_params["job"], request.path_params["name"]
        path = self.results_dir / str(job) / "triage" / name
        if not IMAGE_NAME.match(name) or not path.is_file():
            return Response("not found", status_code=404)
        return FileResponse(path, media_type="image/png")
