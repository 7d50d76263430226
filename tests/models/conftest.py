"""Shared fixtures of the network tests: one CPU thread, fixed seed, state-dict round trip."""
from __future__ import annotations

import io

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def roundtrip():
    """Save ``model.state_dict()``, load it with ``torch.load(weights_only=True)`` into ``fresh`` and check
    that both give identical outputs on ``x`` (eval mode)."""

    def check(model: torch.nn.Module, fresh: torch.nn.Module, x: torch.Tensor) -> None:
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        buf.seek(0)
        state = torch.load(buf, weights_only=True)
        fresh.load_state_dict(state, strict=True)
        model.eval()
        fresh.eval()
        with torch.no_grad():
            a, b = model(x), fresh(x)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)

    return check
