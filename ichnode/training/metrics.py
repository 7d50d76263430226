"""Evaluation metrics in plain numpy.

Classification (binary, positive class = 1):
    :func:`confusion`, :func:`classification_metrics` (accuracy, sensitivity = recall = TPR,
    specificity = TNR, precision = PPV, F1, balanced accuracy), :func:`roc_curve`, :func:`roc_auc`.
    Undefined ratios (0 / 0, e.g. precision without any positive call) are returned as ``nan``.
    :func:`roc_auc` is the area under the empirical ROC curve (trapezoids between the distinct score
    thresholds), which equals the Mann-Whitney probability P(score_pos > score_neg) + 0.5 P(tie).
    Note: the seed 004 paper's "AUC" (its Eq. 3.6) is (TPR + TNR) / 2, i.e. *balanced accuracy*; both are
    reported so the comparison is like for like.
Segmentation: :func:`dice` (two empty masks give 1.0).
Agreement of measurements (e.g. volumes in ml):
    :func:`mae`, :func:`mse`, :func:`rmse`, :func:`mape` (in percent, over reference values != 0),
    :func:`icc` - Shrout & Fleiss (1979) ICC(2,1) (two-way random effects, absolute agreement, single
    measurement; the default) or ICC(3,1) (two-way mixed, consistency, single measurement),
    :func:`bland_altman` (bias, SD of the differences, 95 % limits of agreement).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

CLASSIFICATION_KEYS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "balanced_accuracy", "auc")


def _binary(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y).ravel()
    if y.size and not np.isin(y, (0, 1, True, False)).all():
        raise ValueError(f"{name} must be binary (0/1)")
    return y.astype(bool)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


# ------------------------------------------------------------------------------------ classification
@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


def confusion(y_true, y_pred) -> Confusion:
    t, p = _binary(y_true, "y_true"), _binary(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: {t.shape} vs {p.shape}")
    return Confusion(int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(~t & ~p)), int(np.sum(t & ~p)))


def accuracy(y_true, y_pred) -> float:
    c = confusion(y_true, y_pred)
    return _ratio(c.tp + c.tn, c.n)


def sensitivity(y_true, y_pred) -> float:
    c = confusion(y_true, y_pred)
    return _ratio(c.tp, c.tp + c.fn)


def specificity(y_true, y_pred) -> float:
    c = confusion(y_true, y_pred)
    return _ratio(c.tn, c.tn + c.fp)


def precision(y_true, y_pred) -> float:
    c = confusion(y_true, y_pred)
    return _ratio(c.tp, c.tp + c.fp)


def f1(y_true, y_pred) -> float:
    c = confusion(y_true, y_pred)
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def roc_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds); one point per distinct score plus the (0, 0) start (threshold +inf).

    A sample counts as positive at threshold t when ``score >= t``. Needs both classes present.
    """
    t = _binary(y_true, "y_true")
    s = np.asarray(scores, dtype=np.float64).ravel()
    if t.shape != s.shape:
        raise ValueError(f"shape mismatch: {t.shape} vs {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    pos, neg = int(t.sum()), int((~t).sum())
    if pos == 0 or neg == 0:
        raise ValueError("ROC needs both positive and negative samples")
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # index of the last sample per distinct score
    tps = np.cumsum(t)[last_of_group]
    fps = (last_of_group + 1) - tps
    fpr = np.r_[0.0, fps / neg]
    tpr = np.r_[0.0, tps / pos]
    thresholds = np.r_[np.inf, s[last_of_group]]
    return fpr, tpr, thresholds


def auc_trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def roc_auc(y_true, scores) -> float:
    fpr, tpr, _ = roc_curve(y_true, scores)
    return auc_trapezoid(fpr, tpr)


def classification_metrics(y_true, scores, threshold: float = 0.5) -> dict[str, float]:
    """All binary metrics at ``score >= threshold``, plus ROC AUC (nan when one class is absent)."""
    t = _binary(y_true, "y_true")
    s = np.asarray(scores, dtype=np.float64).ravel()
    c = confusion(t, s >= threshold)
    sens, spec = _ratio(c.tp, c.tp + c.fn), _ratio(c.tn, c.tn + c.fp)
    try:
        auc = roc_auc(t, s)
    except ValueError:
        auc = math.nan
    return {
        "accuracy": _ratio(c.tp + c.tn, c.n),
        "sensitivity": sens,
        "specificity": spec,
        "precision": _ratio(c.tp, c.tp + c.fp),
        "f1": _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
        "balanced_accuracy": (sens + spec) / 2.0,
        "auc": auc,
        "tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn,
    }


def summarize(per_fold: list[dict[str, float]], keys=CLASSIFICATION_KEYS) -> dict[str, dict[str, float]]:
    """Mean and sample SD (ddof = 1) over folds for each key; ``nan`` entries are left out."""
    out = {}
    for k in keys:
        v = np.asarray([f[k] for f in per_fold], dtype=np.float64)
        v = v[np.isfinite(v)]
        out[k] = {
            "mean": float(v.mean()) if v.size else math.nan,
            "sd": float(v.std(ddof=1)) if v.size > 1 else math.nan,
            "n": int(v.size),
        }
    return out


# -------------------------------------------------------------------------------------- segmentation
def dice(a, b) -> float:
    """Dice coefficient 2|A n B| / (|A| + |B|) of two boolean masks; 1.0 when both are empty."""
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    den = int(a.sum()) + int(b.sum())
    return 1.0 if den == 0 else 2.0 * int(np.sum(a & b)) / den


# ---------------------------------------------------------------------------------------- agreement
def _pair(reference, measured) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(reference, np.float64).ravel()
    m = np.asarray(measured, np.float64).ravel()
    if r.shape != m.shape or r.size == 0:
        raise ValueError(f"need two non-empty arrays of equal length, got {r.shape} and {m.shape}")
    return r, m


def mae(reference, measured) -> float:
    r, m = _pair(reference, measured)
    return float(np.mean(np.abs(m - r)))


def mse(reference, measured) -> float:
    r, m = _pair(reference, measured)
    return float(np.mean((m - r) ** 2))


def rmse(reference, measured) -> float:
    return math.sqrt(mse(reference, measured))


def mape(reference, measured) -> float:
    """Mean absolute percentage error, 100 * mean(|m - r| / |r|), over the pairs with r != 0."""
    r, m = _pair(reference, measured)
    keep = r != 0
    if not keep.any():
        raise ValueError("MAPE is undefined when every reference value is 0")
    return float(100.0 * np.mean(np.abs(m[keep] - r[keep]) / np.abs(r[keep])))


def icc(ratings, kind: str = "2,1") -> float:
    """Intraclass correlation of ``ratings`` (n subjects x k raters/methods), Shrout & Fleiss 1979.

    ``kind="2,1"``: two-way random effects, absolute agreement, single rater (default);
    ``kind="3,1"``: two-way mixed effects, consistency, single rater.
    ``nan`` when there is no variance at all (every rating identical).
    """
    x = np.asarray(ratings, np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be (n >= 2 subjects, k >= 2 raters), got {x.shape}")
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_total = np.sum((x - grand) ** 2)
    ss_err = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse_ = max(ss_err, 0.0) / ((n - 1) * (k - 1))
    if kind == "2,1":
        den = msr + (k - 1) * mse_ + k * (msc - mse_) / n
    elif kind == "3,1":
        den = msr + (k - 1) * mse_
    else:
        raise ValueError(f"kind must be '2,1' or '3,1', got {kind!r}")
    return float((msr - mse_) / den) if den > 0 else math.nan


@dataclass(frozen=True)
class BlandAltman:
    n: int
    bias: float  # mean of (measured - reference)
    sd: float  # sample SD of the differences (ddof = 1)
    loa_low: float  # bias - 1.96 sd
    loa_high: float  # bias + 1.96 sd
    bias_ci: tuple[float, float]  # 95 % CI of the bias (normal approximation)

    def as_dict(self) -> dict:
        return asdict(self)


def bland_altman(reference, measured) -> BlandAltman:
    """Bland-Altman statistics of ``measured - reference`` (differences against the pair means)."""
    r, m = _pair(reference, measured)
    d = m - r
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if d.size > 1 else 0.0
    half = 1.96 * sd / math.sqrt(d.size)
    return BlandAltman(int(d.size), bias, sd, bias - 1.96 * sd, bias + 1.96 * sd, (bias - half, bias + half))
