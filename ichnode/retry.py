"""The one retry policy of every outbound delivery (results to destinations, notifications)."""
from __future__ import annotations

import random


def backoff_s(attempt: int, initial: float, maximum: float, rng=random) -> float:
    """Delay before retry `attempt` (1-based): exponential up to `maximum`, with jitter so that
    many nodes retrying one destination do not retry in step."""
    return rng.uniform(0.5, 1.0) * min(maximum, initial * 2 ** max(0, attempt - 1))
