"""Login and logout. The login form is protected by a double-submit CSRF token (the form field
must equal a cookie: no server state before login); the password check is throttled (access.py,
throttle.py), and a throttled attempt is answered here too (429, on the form or as JSON)."""
from __future__ import annotations

import re
import secrets
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ichnode.config import WebConfig
from ichnode.log import get_logger
from ichnode.web import cookies
from ichnode.web.access import Auth, client_address
from ichnode.web.forms import form_encoded, safe_next, same_token
from ichnode.web.throttle import Throttled

log = get_logger("ichnode.web")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")  # what secrets.token_urlsafe(24) gives


class Login:
    def __init__(self, config: WebConfig, auth: Auth, templates: Jinja2Templates):
        self.config, self.auth, self.templates = config, auth, templates

    def _form_page(self, request: Request, status: int = 200, **context) -> Response:
        """The login form, its CSRF token also in a cookie (reused while that one is well formed)."""
        token = request.cookies.get(cookies.LOGIN_CSRF, "")
        token = token if TOKEN.match(token) else secrets.token_urlsafe(24)
        context = {"next": "/", "failed": False, **context, "user": None, "csrf": token,
                   "now": time.time()}
        response = self.templates.TemplateResponse(request, "login.html", context,
                                                   status_code=status)
        cookies.set_login_csrf(response, self.config, request, token)
        return response

    def form(self, request: Request) -> Response:
        return self._form_page(request, next=safe_next(request.query_params.get("next")))

    async def submit(self, request: Request) -> Response:
        if not form_encoded(request):
            return Response("send the login form (url-encoded)", status_code=415)
        form = await request.form()  # at most FORM_MAX_BYTES (limits.BodyLimit)
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        next_url = safe_next(str(form.get("next", "/")))
        token = request.cookies.get(cookies.LOGIN_CSRF, "")
        if not token or not same_token(form.get("csrf", ""), token):
            return self._form_page(request, 403, next=next_url, failed=True)
        # Raises Throttled before hashing when the account or the address is over its limit.
        if not await run_in_threadpool(self.auth.login, name, password, client_address(request),
                                       "form"):
            return self._form_page(request, 401, next=next_url, failed=True)
        self.auth.sessions.delete(request.cookies.get(cookies.SESSION))  # a new id at each login
        session = self.auth.sessions.create(name)
        log.info("login", user=name)
        response = RedirectResponse(next_url, status_code=303)
        cookies.set_session(response, self.config, request, session.id)
        cookies.clear_login_csrf(response, self.config, request)
        return response

    def logout(self, request: Request) -> Response:
        self.auth.sessions.delete(request.cookies.get(cookies.SESSION))  # a copied cookie dies too
        response = RedirectResponse("/login", status_code=303)
        cookies.clear_session(response, self.config, request)
        return response

    def throttled(self, request: Request, exc: Throttled) -> Response:
        """The app's handler for Throttled, from the login form or from HTTP Basic anywhere."""
        log.warning("login_throttled", address=client_address(request))
        retry_after = str(int(exc.retry_after_s) + 1)
        if request.url.path != "/login":
            return JSONResponse({"error": str(exc)}, status_code=429,
                                headers={"Retry-After": retry_after})
        response = self._form_page(request, 429, throttled_min=int(exc.retry_after_s // 60) + 1)
        response.headers["Retry-After"] = retry_after
        return response
