"""Confidence intervals missing from ichnode.training.metrics (which has the point estimates).

* :func:`wilson_interval` - Wilson score interval of a proportion (sensitivity, specificity);
  well behaved at 0/n and n/n and for small n, unlike the Wald interval.
* :func:`delong_auc` - ROC AUC with its DeLong (1988) variance and a normal 95 % interval, clipped
  to [0, 1]. Deterministic (no bootstrap). The AUC equals ``training.metrics.roc_auc`` (the
  Mann-Whitney statistic, ties counting one half). The interval is degenerate (width 0) when the
  scores separate the classes perfectly, and needs at least 2 positives and 2 negatives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 %


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of successes / n; None when n == 0."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class AucEstimate:
    auc: float | None  # None: undefined (one class absent)
    ci: tuple[float, float] | None  # None: undefined (see reason)
    se: float | None
    n_pos: int
    n_neg: int
    reason: str = ""  # why auc or ci is undefined

    def as_dict(self) -> dict:
        return {"auc": self.auc, "ci_low": self.ci[0] if self.ci else None,
                "ci_high": self.ci[1] if self.ci else None, "se": self.se, "n_pos": self.n_pos,
                "n_neg": self.n_neg, "method": "DeLong", "undefined_reason": self.reason or None}


def delong_auc(y_true, scores, z: float = Z95) -> AucEstimate:
    """AUC = P(score_pos > score_neg) + 0.5 P(tie) with the DeLong variance
    Var = S10 / m + S01 / n (m positives, n negatives; S10, S01 the sample variances, ddof 1, of the
    structural components V10_i = mean_j psi(x_i, y_j) and V01_j = mean_i psi(x_i, y_j))."""
    t = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if t.shape != s.shape:
        raise ValueError(f"shape mismatch: {t.shape} vs {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    x, y = s[t], s[~t]
    m, n = x.size, y.size
    if m == 0 or n == 0:
        which = "positive" if m == 0 else "negative"
        return AucEstimate(None, None, None, m, n,
                           f"undefined: no {which} study ({m} positive, {n} negative)")
    psi = (x[:, None] > y[None, :]).astype(np.float64) + 0.5 * (x[:, None] == y[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    auc = float(v10.mean())
    if m < 2 or n < 2:
        return AucEstimate(auc, None, None, m, n, f"no CI: DeLong needs at least 2 positive and 2 "
                                                  f"negative studies ({m} positive, {n} negative)")
    se = math.sqrt(float(v10.var(ddof=1)) / m + float(v01.var(ddof=1)) / n)
    return AucEstimate(auc, (max(0.0, auc - z * se), min(1.0, auc + z * se)), se, m, n)
