"""Metrics against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ichnode.training import metrics as M


def test_confusion_based_metrics_by_hand() -> None:
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    p = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]  # TP 3, FN 1, FP 1, TN 5
    c = M.confusion(y, p)
    assert (c.tp, c.fn, c.fp, c.tn) == (3, 1, 1, 5)
    assert M.accuracy(y, p) == pytest.approx(0.8)
    assert M.sensitivity(y, p) == pytest.approx(0.75)
    assert M.specificity(y, p) == pytest.approx(5 / 6)
    assert M.precision(y, p) == pytest.approx(0.75)
    assert M.f1(y, p) == pytest.approx(0.75)
    all_m = M.classification_metrics(y, np.asarray(p, float), threshold=0.5)
    assert all_m["balanced_accuracy"] == pytest.approx((0.75 + 5 / 6) / 2)
    assert math.isnan(M.precision([1, 0], [0, 0]))  # no positive call: undefined, not 0


def test_auc_of_known_rankings() -> None:
    y = [1, 1, 1, 0, 0, 0, 0]
    s = [0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1]  # 11 of the 12 (pos, neg) pairs ordered correctly
    assert M.roc_auc(y, s) == pytest.approx(11 / 12)
    assert M.roc_auc([1, 0], [0.9, 0.1]) == 1.0
    assert M.roc_auc([1, 0], [0.1, 0.9]) == 0.0
    assert M.roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)  # ties count one half
    assert M.roc_auc([1, 1, 0], [0.6, 0.4, 0.4]) == pytest.approx(0.75)  # (1 + 0.5) / 2


def test_roc_curve_points() -> None:
    fpr, tpr, thr = M.roc_curve([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1.0, 1.0])
    assert thr[0] == np.inf and list(thr[1:]) == [0.9, 0.8, 0.7, 0.1]
    with pytest.raises(ValueError):
        M.roc_curve([1, 1], [0.2, 0.3])


def test_dice_of_known_masks() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :4] = True  # 4 pixels
    b[0, 2:4] = True
    b[1, 0:2] = True  # 4 pixels, 2 shared
    assert M.dice(a, b) == pytest.approx(0.5)
    assert M.dice(a, a) == 1.0
    assert M.dice(np.zeros(3), np.zeros(3)) == 1.0
    assert M.dice(a, np.zeros_like(a)) == 0.0


def test_errors_by_hand() -> None:
    ref, meas = [1.0, 2.0, 4.0], [2.0, 2.0, 2.0]  # differences 1, 0, -2
    assert M.mae(ref, meas) == pytest.approx(1.0)
    assert M.mse(ref, meas) == pytest.approx(5 / 3)
    assert M.rmse(ref, meas) == pytest.approx(math.sqrt(5 / 3))
    assert M.mape(ref, meas) == pytest.approx(50.0)  # (100 % + 0 + 50 %) / 3
    assert M.mape([0.0, 2.0], [1.0, 3.0]) == pytest.approx(50.0)  # zero references are left out


SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def test_icc_shrout_fleiss_table() -> None:
    # Shrout & Fleiss 1979, Table 4: ICC(2,1) = 0.29, ICC(3,1) = 0.71
    assert M.icc(SHROUT_FLEISS, "2,1") == pytest.approx(0.29, abs=0.005)
    assert M.icc(SHROUT_FLEISS, "3,1") == pytest.approx(0.71, abs=0.005)


def test_icc_identical_and_shifted_ratings() -> None:
    x = np.array([1.0, 4.0, 2.5, 7.0, 3.0])
    same = np.stack([x, x], axis=1)
    assert M.icc(same, "2,1") == pytest.approx(1.0)
    assert M.icc(same, "3,1") == pytest.approx(1.0)
    shifted = np.stack([x, x + 1.0], axis=1)  # consistent but not in absolute agreement
    assert M.icc(shifted, "3,1") == pytest.approx(1.0)
    assert M.icc(shifted, "2,1") < 1.0
    assert math.isnan(M.icc(np.ones((3, 2))))
    with pytest.raises(ValueError):
        M.icc(same, "1,1")


def test_bland_altman_by_hand() -> None:
    ba = M.bland_altman([1, 2, 3, 4], [2, 3, 3, 6])  # differences 1, 1, 0, 2
    sd = math.sqrt(2 / 3)
    assert ba.n == 4 and ba.bias == pytest.approx(1.0) and ba.sd == pytest.approx(sd)
    assert ba.loa_low == pytest.approx(1 - 1.96 * sd) and ba.loa_high == pytest.approx(1 + 1.96 * sd)
    assert ba.bias_ci[0] == pytest.approx(1 - 1.96 * sd / 2)


def test_summarize_mean_sd() -> None:
    folds = [{k: v for k in M.CLASSIFICATION_KEYS} for v in (0.6, 0.8, 1.0)]
    folds[0]["precision"] = float("nan")
    s = M.summarize(folds)
    assert s["accuracy"]["mean"] == pytest.approx(0.8) and s["accuracy"]["sd"] == pytest.approx(0.2)
    assert s["precision"]["n"] == 2 and s["precision"]["mean"] == pytest.approx(0.9)
