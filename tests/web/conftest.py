"""Fixtures: `stores` (a job store and a worklist store in one SQLite file) and `users` (one
worklist account, ann, with PASSWORD)."""
import pytest

from ichnode.config import WebUser
from ichnode.web.auth import hash_password

from tests.triage.stores import Stores

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def users():
    return (WebUser("ann", hash_password(PASSWORD)),)


@pytest.fixture
def stores(tmp_path):
    s = Stores(tmp_path / "ichnode.sqlite")
    yield s
    s.close()
