"""The worklist web app: login, worklist, study page, JSON API, OpenAPI document, /metrics, and
STOW-RS input (stow_input.py). This module only assembles it: the route table below says, for
every URL, who may call it (a guard.py Rule, checked in that one place) and which handler answers.

Handlers by concern: login.py (login, logout, the throttled answer), pages.py (server-rendered
pages, the study page's forms, images), api_handlers.py (JSON API), actions.py (acknowledge,
dismiss, restore: shared by the forms and the API). Sessions live on the server (sessions.py),
logins are throttled before the password is hashed (throttle.py), request bodies are limited
while they stream in (limits.py). Patient identifiers appear only on authenticated pages and API
answers; no page or API path contains them. Handlers without a form body are plain functions:
Starlette runs them in its thread pool, so SQLite reads and Basic-auth hashing never block the
event loop.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ichnode import __version__
from ichnode.config import WebConfig
from ichnode.triage.metrics import CONTENT_TYPE
from ichnode.web.access import Auth
from ichnode.web.api_handlers import WorklistApi
from ichnode.web.guard import (API, API_ACTION, FORM_ACTION, FRAGMENT, IMAGE, METRICS, PAGE,
                               PUBLIC, Guard)
from ichnode.web.limits import FORM_MAX_BYTES, BodyLimit
from ichnode.web.login import Login
from ichnode.web.pages import Pages
from ichnode.web.security_headers import SecurityHeaders
from ichnode.web.sessions import SessionStore
from ichnode.web.stow_input import stow_endpoint
from ichnode.web.templating import make_templates
from ichnode.web.throttle import LoginThrottle, Throttled

HERE = Path(__file__).parent
STOW_PATH = "/dicomweb/studies"
GET, POST = ["GET"], ["POST"]  # GET answers HEAD too


def build_app(config: WebConfig, worklist, outbox, metrics, results_dir: Path,
              store_handler=None, *, clock: Callable[[], float] = time.monotonic) -> Starlette:
    """The web app; outbox: where the notifications about a study are (ichnode.store.outbox);
    with store_handler (the node's scp.StoreHandler) it also takes STOW-RS input.
    clock: for session expiry and the login throttle (tests move it on)."""
    throttle = LoginThrottle(config.login_max_failures, config.login_max_failures_per_address,
                             config.login_window_s, clock)
    auth = Auth({u.name: u.password_hash for u in config.users}, throttle,
                SessionStore(config.session_max_age_s, clock), config.metrics_token, clock)
    templates = make_templates(config)
    login = Login(config, auth, templates)
    pages = Pages(config, worklist, outbox, templates, results_dir)
    api = WorklistApi(config, worklist, outbox)

    def scrape(request: Request, caller) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    def metrics_off(request: Request) -> Response:
        # Before any credential check, as the URL does not exist then.
        return Response("metrics are off (web.metrics)", status_code=404)

    def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    table = [
        # path                              methods who may call  handler
        ("/",                                GET,    PAGE,        pages.worklist_page),
        ("/login",                           GET,    PUBLIC,      login.form),
        ("/login",                           POST,   PUBLIC,      login.submit),
        ("/logout",                          POST,   PUBLIC,      login.logout),
        ("/fragments/worklist",              GET,    FRAGMENT,    pages.worklist_rows),
        ("/study/{job:int}",                 GET,    PAGE,        pages.study_page),
        ("/study/{job:int}/{action}",        POST,   FORM_ACTION, pages.study_action),
        ("/images/{job:int}/{name}",         GET,    IMAGE,       pages.image),
        ("/api/worklist",                    GET,    API,         api.worklist_items),
        ("/api/worklist/{job:int}",          GET,    API,         api.worklist_item),
        ("/api/worklist/{job:int}/{action}", POST,   API_ACTION,  api.worklist_action),
        ("/api/openapi.json",                GET,    PUBLIC,      api.openapi),
        ("/metrics",                         GET,    METRICS,     scrape) if config.metrics else
        ("/metrics",                         GET,    PUBLIC,      metrics_off),
        ("/healthz",                         GET,    PUBLIC,      healthz),
    ]
    guard = Guard(auth)
    routes = [Route(path, guard(rule, handler), methods=methods,
                    include_in_schema=rule in (API, API_ACTION))  # the OpenAPI document's paths
              for path, methods, rule, handler in table]
    routes.append(Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"))
    if store_handler is not None:  # stow_input.py checks its callers itself (session or Basic)
        routes.append(Route(STOW_PATH, methods=POST, include_in_schema=False,
                            endpoint=stow_endpoint(store_handler, auth)))
    stow_max = int(config.stow_max_mb * 2 ** 20)

    def body_limit(path: str) -> tuple[int, str]:
        if path == STOW_PATH:
            return stow_max, "web.stow_max_mb"
        return FORM_MAX_BYTES, "the limit for forms and API requests"

    middleware = [Middleware(SecurityHeaders), Middleware(BodyLimit, limit_for=body_limit)]
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={Throttled: login.throttled})
