"""The worklist web app: login, worklist, study page, JSON API, OpenAPI document, /metrics, and
STOW-RS input (stow_input.py). Sessions live on the server (sessions.py), logins are throttled before the
password is hashed (throttle.py), request bodies are limited while they stream in (limits.py).

Pages are Jinja2 templates rendered on the server; the worklist page polls the JSON API and swaps
in the rows fragment when the worklist's version changes (no reload). Patient identifiers appear
only on authenticated pages and API answers; no page or API path contains them. Handlers without a
form body are plain functions: Starlette runs them in its thread pool, so SQLite reads and
Basic-auth hashing never block the event loop.
"""
from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ichnode import __version__
from ichnode.config import WebConfig
from ichnode.log import get_logger
from ichnode.results.codes import BANNER_TEXT
from ichnode.triage.metrics import CONTENT_TYPE
from ichnode.web import cookies
from ichnode.web.access import Auth, client_address
from ichnode.web.api import (api_item, api_notification, csrf_safe_post, error, iso,
                             schema_generator, unauthorised)
from ichnode.web.limits import FORM_MAX_BYTES, BodyLimit
from ichnode.web.sessions import Session, SessionStore
from ichnode.web.stow_input import stow_endpoint
from ichnode.web.throttle import LoginThrottle, Throttled

log = get_logger("ichnode.web")
HERE = Path(__file__).parent
IMAGE_NAME = re.compile(r"^(thumbnail|key_\d{4})\.png$")
ACTIONS = ("acknowledge", "dismiss", "restore")
STOW_PATH = "/dicomweb/studies"
TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")  # what secrets.token_urlsafe(24) gives


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def _local_time(epoch: float | None) -> str:
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _person(name: str | None) -> str:
    """DICOM PN "FAMILY^GIVEN^MIDDLE" as "FAMILY, GIVEN MIDDLE"."""
    family, _, rest = (name or "").partition("^")
    rest = " ".join(p for p in rest.split("^") if p)
    return f"{family}, {rest}" if family and rest else family or rest


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/") and not value.startswith("//") else "/"


def _same_token(sent: object, expected: str) -> bool:
    # As bytes: compare_digest refuses non-ASCII str, and a form field can hold anything.
    return secrets.compare_digest(str(sent).encode(), expected.encode())


def _form_encoded(request: Request) -> bool:
    """Our forms are url-encoded; refusing multipart keeps its parser away from anonymous input."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/x-www-form-urlencoded"


class SecurityHeaders:
    """No caching of pages with patient data, no framing, only own scripts and images."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith("/static/")

        async def wrapped(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"),
                            (b"content-security-policy",
                             b"default-src 'self'; img-src 'self'; frame-ancestors 'none'")]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, wrapped)


def build_app(config: WebConfig, worklist, metrics, results_dir: Path,
              store_handler=None, *, clock: Callable[[], float] = time.monotonic) -> Starlette:
    """The web app; with store_handler (the node's scp.StoreHandler) it also takes STOW-RS input.
    clock: for session expiry and the login throttle (tests move it on)."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(age=_age, local_time=_local_time, person=_person)
    templates.env.globals.update(banner=BANNER_TEXT, ichnode_version=__version__,
                                 refresh_s=config.refresh_s)
    throttle = LoginThrottle(config.login_max_failures, config.login_max_failures_per_address,
                             config.login_window_s, clock)
    auth = Auth({u.name: u.password_hash for u in config.users}, throttle,
                SessionStore(config.session_max_age_s, clock), config.metrics_token, clock)
    schema = schema_generator()

    def page(request: Request, name: str, session: Session, **context) -> Response:
        context.update(user=session.user, csrf=session.csrf, now=time.time())
        return templates.TemplateResponse(request, name, context)

    def login_page(request: Request, status: int = 200, **context) -> Response:
        """The login form, its CSRF token in a cookie too (double submit: no state before login)."""
        token = request.cookies.get(cookies.LOGIN_CSRF, "")
        token = token if TOKEN.match(token) else secrets.token_urlsafe(24)
        context = {"next": "/", "failed": False, **context, "user": None, "csrf": token,
                   "now": time.time()}
        response = templates.TemplateResponse(request, "login.html", context, status_code=status)
        cookies.set_login_csrf(response, config, request, token)
        return response

    def login_redirect(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    def current(include_dismissed: bool) -> list[dict]:
        return worklist.items(include_dismissed, closed_days=config.closed_after_days)

    # --- pages ----------------------------------------------------------------------------
    def login_form(request: Request) -> Response:
        return login_page(request, next=_safe_next(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        if not _form_encoded(request):
            return Response("send the login form (url-encoded)", status_code=415)
        form = await request.form()  # at most FORM_MAX_BYTES (limits.BodyLimit)
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        next_url = _safe_next(str(form.get("next", "/")))
        token = request.cookies.get(cookies.LOGIN_CSRF, "")
        if not token or not _same_token(form.get("csrf", ""), token):
            return login_page(request, 403, next=next_url, failed=True)
        # Raises Throttled before hashing when the account or the address is over its limit.
        if not await run_in_threadpool(auth.login, name, password, client_address(request), "form"):
            return login_page(request, 401, next=next_url, failed=True)
        auth.sessions.delete(request.cookies.get(cookies.SESSION))  # a new id at each login
        session = auth.sessions.create(name)
        log.info("login", user=name)
        response = RedirectResponse(next_url, status_code=303)
        cookies.set_session(response, config, request, session.id)
        cookies.clear_login_csrf(response, config, request)
        return response

    def logout(request: Request) -> Response:
        auth.sessions.delete(request.cookies.get(cookies.SESSION))  # a copied cookie dies too
        response = RedirectResponse("/login", status_code=303)
        cookies.clear_session(response, config, request)
        return response

    def worklist_page(request: Request) -> Response:
        session = auth.session(request)
        if session is None:
            return login_redirect(request)
        show_all = request.query_params.get("all") == "1"
        return page(request, "worklist.html", session, items=current(show_all),
                    show_all=show_all, version=worklist.version())

    def worklist_rows(request: Request) -> Response:
        session = auth.session(request)
        if session is None:
            return Response("login required", status_code=401)
        show_all = request.query_params.get("all") == "1"
        return page(request, "_rows.html", session, items=current(show_all),
                    show_all=show_all)

    def study_page(request: Request) -> Response:
        session = auth.session(request)
        if session is None:
            return login_redirect(request)
        row = worklist.get(request.path_params["job"])
        if row is None:
            return Response("no such study on the worklist", status_code=404)
        return page(request, "study.html", session, item=row,
                    notifications=worklist.notifications(row["job_id"]))

    async def study_action(request: Request) -> Response:
        session = auth.session(request)
        if session is None:
            return login_redirect(request)
        user = session.user
        if not _form_encoded(request):
            return Response("send the form (url-encoded)", status_code=415)
        form = await request.form()
        if not _same_token(form.get("csrf", ""), session.csrf):
            return Response("stale form: reload the page", status_code=403)
        job, action = request.path_params["job"], request.path_params["action"]
        if action not in ACTIONS:
            return Response("unknown action", status_code=404)
        row = worklist.restore(job) if action == "restore" else worklist.mark(job, action, user)
        if row is None:
            return Response("no such study on the worklist", status_code=404)
        log.info("worklist_" + action, job=job, user=user)
        return RedirectResponse(_safe_next(str(form.get("next", f"/study/{job}"))), status_code=303)

    def image(request: Request) -> Response:
        if auth.user(request)[0] is None:
            return Response("login required", status_code=401)
        job, name = request.path_params["job"], request.path_params["name"]
        path = results_dir / str(job) / "triage" / name
        if not IMAGE_NAME.match(name) or not path.is_file():
            return Response("not found", status_code=404)
        return FileResponse(path, media_type="image/png")

    # --- API ------------------------------------------------------------------------------
    def api_worklist(request: Request) -> Response:
        """
        summary: The worklist, by priority (critical, high, not analysed, routine) then arrival;
          acknowledged or dismissed rows older than web.closed_after_days are left out.
        parameters:
          - {name: include_dismissed, in: query, required: false, schema: {type: string, enum: ["0", "1"]}}
        responses:
          "200": {description: The worklist., content: {application/json: {schema: {$ref: "#/components/schemas/Worklist"}}}}
          "401": {description: Not logged in., content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
        """
        if auth.user(request)[0] is None:
            return unauthorised()
        now = time.time()
        items = current(request.query_params.get("include_dismissed") == "1")
        return JSONResponse({"version": worklist.version(), "generated": iso(now),
                             "count": len(items), "items": [api_item(r, now) for r in items],
                             "notice": BANNER_TEXT})

    def api_worklist_item(request: Request) -> Response:
        """
        summary: One worklist item, with its notifications.
        parameters:
          - {name: job, in: path, required: true, schema: {type: integer}}
        responses:
          "200": {description: The item., content: {application/json: {schema: {$ref: "#/components/schemas/WorklistItem"}}}}
          "401": {description: Not logged in., content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
          "404": {description: No such job on the worklist., content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
        """
        if auth.user(request)[0] is None:
            return unauthorised()
        row = worklist.get(request.path_params["job"])
        if row is None:
            return error(404, "no such job on the worklist")
        item = api_item(row)
        item["notifications"] = [api_notification(n) for n in worklist.notifications(row["job_id"])]
        return JSONResponse(item)

    def api_action(request: Request) -> Response:
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
        user, how = auth.user(request)
        if user is None:
            return unauthorised()
        if not csrf_safe_post(request, how):
            return error(403, "send Content-Type: application/json")
        job, action = request.path_params["job"], request.path_params["action"]
        if action not in ACTIONS:
            return error(404, f"unknown action {action!r}")
        row = worklist.restore(job) if action == "restore" else worklist.mark(job, action, user)
        if row is None:
            return error(404, "no such job on the worklist")
        log.info("worklist_" + action, job=job, user=user)
        return JSONResponse(api_item(row))

    def openapi(request: Request) -> Response:
        return JSONResponse(schema.get_schema(routes=request.app.routes))

    def metrics_endpoint(request: Request) -> Response:
        if not config.metrics:
            return Response("metrics are off (web.metrics)", status_code=404)
        if not auth.may_scrape(request):
            return unauthorised()
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    routes = [
        Route("/", worklist_page, include_in_schema=False),
        Route("/login", login_form, methods=["GET"], include_in_schema=False),
        Route("/login", login, methods=["POST"], include_in_schema=False),
        Route("/logout", logout, methods=["POST"], include_in_schema=False),
        Route("/fragments/worklist", worklist_rows, include_in_schema=False),
        Route("/study/{job:int}", study_page, include_in_schema=False),
        Route("/study/{job:int}/{action}", study_action, methods=["POST"], include_in_schema=False),
        Route("/images/{job:int}/{name}", image, include_in_schema=False),
        Route("/api/worklist", api_worklist, methods=["GET"]),
        Route("/api/worklist/{job:int}", api_worklist_item, methods=["GET"]),
        Route("/api/worklist/{job:int}/{action}", api_action, methods=["POST"]),
        Route("/api/openapi.json", openapi, include_in_schema=False),
        Route("/metrics", metrics_endpoint, include_in_schema=False),
        Route("/healthz", healthz, include_in_schema=False),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    if store_handler is not None:
        routes.append(Route(STOW_PATH, methods=["POST"], include_in_schema=False,
                            endpoint=stow_endpoint(store_handler, auth)))
    stow_max = int(config.stow_max_mb * 2 ** 20)

    def body_limit(path: str) -> tuple[int, str]:
        if path == STOW_PATH:
            return stow_max, "web.stow_max_mb"
        return FORM_MAX_BYTES, "the limit for forms and API requests"

    middleware = [Middleware(SecurityHeaders), Middleware(BodyLimit, limit_for=body_limit)]

    def throttled(request: Request, exc: Throttled) -> Response:
        log.warning("login_throttled", address=client_address(request))
        retry_after = str(int(exc.retry_after_s) + 1)
        if request.url.path != "/login":
            return JSONResponse({"error": str(exc)}, status_code=429,
                                headers={"Retry-After": retry_after})
        response = login_page(request, 429, throttled_min=int(exc.retry_after_s // 60) + 1)
        response.headers["Retry-After"] = retry_after
        return response

    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={Throttled: throttled})
