"""The two cookies the app sets: the session id (sessions.py) and the login form's CSRF token
(double-submit: the form field must equal the cookie, so no server state exists before login).

Both are HttpOnly and SameSite=Strict. Secure follows `web.secure_cookie`: "always" (TLS ends at
a reverse proxy in front of the node), "never", or "auto": when the node terminates TLS itself,
or the request came as https through a proxy uvicorn trusts for X-Forwarded-Proto (by default one
on 127.0.0.1; FORWARDED_ALLOW_IPS widens it).
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ichnode.config import WebConfig

SESSION = "ichnode_session"
LOGIN_CSRF = "ichnode_login_csrf"
LOGIN_CSRF_MAX_AGE_S = 3600


def secure(config: WebConfig, request: Request) -> bool:
    if config.secure_cookie == "always":
        return True
    if config.secure_cookie == "never":
        return False
    return config.tls_cert is not None or request.url.scheme == "https"


def set_session(response: Response, config: WebConfig, request: Request, sid: str) -> None:
    response.set_cookie(SESSION, sid, max_age=config.session_max_age_s, path="/", httponly=True,
                        samesite="strict", secure=secure(config, request))


def clear_session(response: Response, config: WebConfig, request: Request) -> None:
    response.delete_cookie(SESSION, path="/", httponly=True, samesite="strict",
                           secure=secure(config, request))


def set_login_csrf(response: Response, config: WebConfig, request: Request, token: str) -> None:
    response.set_cookie(LOGIN_CSRF, token, max_age=LOGIN_CSRF_MAX_AGE_S, path="/login",
                        httponly=True, samesite="strict", secure=secure(config, request))


def clear_login_csrf(response: Response, config: WebConfig, request: Request) -> None:
    response.delete_cookie(LOGIN_CSRF, path="/login", httponly=True, samesite="strict",
                           secure=secure(config, request))
