"""Wilson and DeLong intervals on arrays small enough to check by hand."""
import math

import numpy as np
import pytest

from ichnode.training.metrics import roc_auc
from ichnode.validate.stats import delong_auc, wilson_interval


def test_wilson_by_hand():
    # 5/10: centre 0.5, half-width 1.96/(1 + 1.96^2/10) * sqrt(0.025 + 1.96^2/400) = 0.2634
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    # 1/1: (z^2 / (1 + z^2)... ) lower bound 1 / (1 + z^2) = 0.2065, upper 1
    assert wilson_interval(1, 1) == pytest.approx((1 / (1 + 1.959964 ** 2), 1.0), abs=1e-5)
    assert wilson_interval(0, 4) == pytest.approx((0.0, 1.959964 ** 2 / (4 + 1.959964 ** 2)), abs=1e-5)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_delong_by_hand():
    # positives 0.9, 0.8, 0.4; negatives 0.5, 0.3, 0.2: V10 = (1, 1, 2/3), V01 = (2/3, 1, 1),
    # AUC 8/9, var = (1/27) / 3 + (1/27) / 3 = 2/81, SE = sqrt(2) / 9
    y = [1, 1, 1, 0, 0, 0]
    s = [0.9, 0.8, 0.4, 0.5, 0.3, 0.2]
    est = delong_auc(y, s)
    assert est.auc == pytest.approx(8 / 9) == roc_auc(y, s)
    assert est.se == pytest.approx(math.sqrt(2) / 9)
    assert est.ci[0] == pytest.approx(8 / 9 - 1.959964 * math.sqrt(2) / 9, abs=1e-6)
    assert est.ci[1] == 1.0  # clipped


def test_delong_ties_count_half():
    est = delong_auc([1, 1, 0, 0], [0.5, 0.5, 0.5, 0.5])
    assert est.auc == 0.5 and est.se == 0.0 and est.ci == (0.5, 0.5)


def test_delong_undefined():
    est = delong_auc([0], [3.0])
    assert est.auc is None and est.ci is None and "no positive study" in est.reason
    one_each = delong_auc([1, 0], [2.0, 1.0])
    assert one_each.auc == 1.0 and one_each.ci is None and "at least 2" in one_each.reason


def test_delong_matches_roc_auc_on_random_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = rng.normal(size=60) + y
    assert delong_auc(y, s).auc == pytest.approx(roc_auc(y, s))
