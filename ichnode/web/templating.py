"""The Jinja2 templates of the pages, with the filters and globals they use."""
from __future__ import annotations

import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from ichnode import __version__
from ichnode.config import WebConfig
from ichnode.results.codes import BANNER_TEXT
from ichnode.web.sessions import Session

TEMPLATES = Path(__file__).parent / "templates"


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def local_time(epoch: float | None) -> str:
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def person(name: str | None) -> str:
    """DICOM PN "FAMILY^GIVEN^MIDDLE" as "FAMILY, GIVEN MIDDLE"."""
    family, _, rest = (name or "").partition("^")
    rest = " ".join(p for p in rest.split("^") if p)
    return f"{family}, {rest}" if family and rest else family or rest


def make_templates(config: WebConfig) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters.update(age=age, local_time=local_time, person=person)
    templates.env.globals.update(banner=BANNER_TEXT, ichnode_version=__version__,
                                 refresh_s=config.refresh_s)
    return templates


def render(templates: Jinja2Templates, request: Request, name: str, session: Session,
           **context) -> Response:
    """A logged-in user's page: each shows the user and carries the session's CSRF token."""
    context.update(user=session.user, csrf=session.csrf, now=time.time())
    return templates.TemplateResponse(request, name, context)
