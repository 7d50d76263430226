"""The one retry policy of every outbound delivery (results to destinations, notifications)."""
from __future__ import annotations

import random
from dataclasses import dataclass


def backoff_s(attempt: int, initial: float, maximum: float, rng=random) -> float:
    """Delay before retry `attempt` (1-based): exponential up to `maximum`, with jitter so that
    many nodes retrying one destination do not retry in step."""
    return rng.uniform(0.5, 1.0) * min(maximum, initial * 2 ** max(0, attempt - 1))


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float

    @classmethod
    def of(cls, section) -> "RetryPolicy":
        """From a config section with max_attempts, backoff_initial_s and backoff_max_s (sender:,
        notify:)."""
        return cls(section.max_attempts, section.backoff_initial_s, section.backoff_max_s)

    def next_attempt(self, attempts: int, now: float, retry: bool = True) -> float | None:
        """When to try again after `attempts` failed tries; None: give up (the dead-letter rule)."""
        if not retry or attempts >= self.max_attempts:
            return None
        return now + backoff_s(attempts, self.backoff_initial_s, self.backoff_max_s)
