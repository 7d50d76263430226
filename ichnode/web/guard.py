"""Who may call each handler, checked in one place: the route table (app.py) names a Rule for
every route, and Guard wraps the handler with it, so a handler starts with its caller known.

A Rule says which credentials count and how a refusal looks (a browser page is sent to the login
form, a page fragment or image gets a plain 401, the API a JSON 401). Two rules add a CSRF guard:
FORM_ACTION wants the session's token in a url-encoded form; API_ACTION wants a cookie-
authenticated POST to say it is not a plain form (JSON or X-Requested-With), which a cross-site
form cannot say. HTTP Basic requests need neither: a browser never sends them on its own.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from typing import Callable, Literal
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ichnode.web.access import Auth
from ichnode.web.api import csrf_safe_post, error, unauthorised
from ichnode.web.forms import form_encoded, same_token
from ichnode.web.sessions import Session


def login_redirect(request: Request) -> Response:
    """To the login form, which comes back here after the login."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def login_required(request: Request) -> Response:
    return Response("login required", status_code=401)


def json_unauthorised(request: Request) -> Response:
    return unauthorised()


@dataclass(frozen=True, eq=False)  # a rule is itself, whatever its fields
class Rule:
    # "session": the session cookie only (pages, whose forms need its CSRF token);
    # "user": the session or HTTP Basic (scripts); "scraper": the metrics bearer token or a user.
    credentials: Literal["session", "user", "scraper"]
    refuse: Callable[[Request], Response]
    csrf_form: bool = False  # a url-encoded form carrying the session's CSRF token
    csrf_json: bool = False  # a cookie-authenticated POST must be JSON or XHR


PUBLIC = None  # anyone: login, logout, the OpenAPI document, the health check
PAGE = Rule("session", login_redirect)
FRAGMENT = Rule("session", login_required)  # polled by the page's script: no redirect
FORM_ACTION = Rule("session", login_redirect, csrf_form=True)
IMAGE = Rule("user", login_required)
API = Rule("user", json_unauthorised)
API_ACTION = Rule("user", json_unauthorised, csrf_json=True)
METRICS = Rule("scraper", json_unauthorised)


@dataclass(frozen=True)
class Caller:
    user: str | None  # None for the metrics scraper (by token or as a user: not told apart)
    how: Literal["session", "basic", "scraper"]  # scraper: /metrics, by token or as a user
    session: Session | None = None  # with credentials "session": the pages need its CSRF token
    form: FormData | None = None  # with csrf_form: the form, its token checked


class Guard:
    def __init__(self, auth: Auth):
        self.auth = auth

    def __call__(self, rule: Rule | None, handler: Callable) -> Callable:
        """The handler behind the rule; handler(request, caller) runs only for an allowed caller.
        A form handler is async (it awaits the body); the others are plain functions, which
        Starlette runs in its thread pool, where checking a Basic password may block."""
        if rule is PUBLIC:
            return handler
        if inspect.iscoroutinefunction(handler) != rule.csrf_form:
            raise TypeError(f"{handler.__name__}: async exactly when the rule reads a form")
        if rule.csrf_form:
            async def guarded(request: Request) -> Response:
                caller = self.caller(rule, request)
                if caller is None:
                    return rule.refuse(request)
                if not form_encoded(request):
                    return Response("send the form (url-encoded)", status_code=415)
                form = await request.form()  # at most FORM_MAX_BYTES (limits.BodyLimit)
                if not same_token(form.get("csrf", ""), caller.session.csrf):
                    return Response("stale form: reload the page", status_code=403)
                return await handler(request, dataclasses.replace(caller, form=form))
        else:
            def guarded(request: Request) -> Response:
                caller = self.caller(rule, request)
                if caller is None:
                    return rule.refuse(request)
                if rule.csrf_json and not csrf_safe_post(request, caller.how):
                    return error(403, "send Content-Type: application/json")
                return handler(request, caller)
        return functools.wraps(handler)(guarded)  # the docstring feeds the OpenAPI document

    def caller(self, rule: Rule, request: Request) -> Caller | None:
        if rule.credentials == "session":
            session = self.auth.session(request)
            return None if session is None else Caller(session.user, "session", session)
        if rule.credentials == "user":
            user, how = self.auth.user(request)
            return None if user is None else Caller(user, how)
        return Caller(None, "scraper") if self.auth.may_scrape(request) else None
