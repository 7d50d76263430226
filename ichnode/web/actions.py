"""Acknowledge, dismiss or restore a worklist item: the one place the change is made and logged,
for the study page's forms (pages.py) and the JSON API (api_handlers.py) alike; those differ only
in how they read the request and shape the answer."""
from __future__ import annotations

from ichnode.log import get_logger

log = get_logger("ichnode.web")
ACTIONS = ("acknowledge", "dismiss", "restore")


class UnknownAction(LookupError):
    pass


class NotOnWorklist(LookupError):
    pass


def apply_action(worklist, job: int, action: str, user: str) -> dict:
    """The worklist row after the change; raises UnknownAction or NotOnWorklist (both a 404)."""
    if action not in ACTIONS:
        raise UnknownAction(action)
    row = worklist.restore(job) if action == "restore" else worklist.mark(job, action, user)
    if row is None:
        raise NotOnWorklist(job)
    log.info("worklist_" + action, job=job, user=user)
    return row
