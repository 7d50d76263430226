"""Shared fixtures. Helper functions are in tests/helpers.py (`from tests.helpers import ...`)."""
from __future__ import annotations

import pytest

from tests.helpers import Process


@pytest.fixture
def processes():
    started: list[Process] = []

    def start(args, log_path, env=None) -> Process:
        p = Process(args, log_path, env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
