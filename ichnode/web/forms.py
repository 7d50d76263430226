"""The small rules every url-encoded form of the app follows (login and worklist actions)."""
from __future__ import annotations

import secrets

from starlette.requests import Request


def form_encoded(request: Request) -> bool:
    """Our forms are url-encoded; refusing multipart keeps its parser away from anonymous input."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/x-www-form-urlencoded"


def same_token(sent: object, expected: str) -> bool:
    # As bytes: compare_digest refuses non-ASCII str, and a form field can hold anything.
    return secrets.compare_digest(str(sent).encode(), expected.encode())


def safe_next(value: str | None) -> str:
    """A redirect target from a form or query: a path on this site only (no //other.host)."""
    return value if value and value.startswith("/") and not value.startswith("//") else "/"
