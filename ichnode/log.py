"""structlog set-up: JSON lines when not on a terminal, coloured console otherwise.

Never log patient names or IDs: log UIDs, or `ids.digest()` of anything identifying.
"""
from __future__ import annotations

import logging
import sys

import structlog


def setup_logging(fmt: str = "auto", level: int = logging.INFO) -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # pynetdicom logs dataset dumps (with patient names) at DEBUG; keep it at WARNING.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def get_logger(name: str):
    return structlog.get_logger(name)
