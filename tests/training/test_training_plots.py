"""ROC and Bland-Altman PNGs are written and are real images."""
from __future__ import annotations

import numpy as np
from PIL import Image

from ichnode.training.metrics import roc_curve
from ichnode.training.plots import bland_altman_png, roc_png


def test_roc_png(tmp_path) -> None:
    fpr, tpr, _ = roc_curve([1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.1, 0.05])
    path = roc_png([(fpr, tpr, "a"), (fpr, tpr, "pooled")], tmp_path / "roc.png", title="t")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (640, 640)
        a = np.asarray(im.convert("L"))
    assert (a < 50).sum() > 1000  # axes, text and curves were drawn


def test_bland_altman_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    ref = rng.uniform(1, 60, 40)
    path = bland_altman_png(ref, ref + rng.normal(0.5, 2, 40), tmp_path / "ba.png", unit="ml")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (720, 540)
        colours = np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)
    assert len(colours) > 3  # coloured lines, grey points
