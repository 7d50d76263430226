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


@pytest.fixture(scope="session")
def postgresql_server():
    """A private PostgreSQL server for the session (tests/services.py)."""
    from tests.services import PostgreSQL

    server = PostgreSQL()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rabbitmq_server():
    """A private RabbitMQ broker for the session (tests/services.py)."""
    from tests.services import RabbitMQ

    broker = RabbitMQ()
    yield broker
    broker.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """Where a store lives: a SQLite file (the single node) or a fresh PostgreSQL database
    (cluster mode). Store tests that take it run once on each."""
    if request.param == "sqlite":
        return tmp_path / "ichnode.sqlite"
    return request.getfixturevalue("postgresql_server").new_database()
