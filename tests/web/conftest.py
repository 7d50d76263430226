"""The `stores` fixture: a job store and a worklist store in one SQLite file."""
import pytest

from tests.triage.stores import Stores


@pytest.fixture
def stores(tmp_path):
    s = Stores(tmp_path / "ichnode.sqlite")
    yield s
    s.close()
