"""1-2 epoch smoke runs on tiny PNGs: checkpoint written, resume is exact, entry points write their files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ichnode.training import classify as C
from ichnode.training import crossvalidate, stratified_folds, train_classifier
from ichnode.training.loop import CHECKPOINT
from ichnode.training.png_dataset import load_png_set
from ichnode.training.recipes import RECIPES


@pytest.mark.parametrize("name", ["resnet50_cls", "vgg_wso", "dtvit"])
def test_one_epoch_then_resume_matches_straight_run(tiny_png_set, tmp_path, name) -> None:
    data = load_png_set(tiny_png_set, name, 32)
    straight = C.fit(name, data, epochs=2, checkpoint_dir=tmp_path / "a", log=None)
    first = C.fit(name, data, epochs=1, checkpoint_dir=tmp_path / "b", log=None)
    ckpt = tmp_path / "b" / CHECKPOINT
    assert ckpt.exists() and first.history[-1]["epoch"] == 1
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1 and {"model", "optimizer", "rng", "history", "meta"} <= state.keys()
    lines: list[str] = []
    resumed = C.fit(name, data, epochs=2, checkpoint_dir=tmp_path / "b", log=lines.append)
    assert resumed.resumed_from == 1 and "resumed" in lines[0]
    assert len(resumed.history) == 2 and "epoch 2/2" in lines[-1] and "loss" in lines[-1]
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert straight.history[-1]["loss"] == resumed.history[-1]["loss"]


def test_resume_refuses_a_different_run(tiny_png_set, tmp_path) -> None:
    data = load_png_set(tiny_png_set, "resnet50_cls", 32)
    C.fit("resnet50_cls", data, epochs=1, checkpoint_dir=tmp_path, log=None)
    with pytest.raises(ValueError, match="different run"):
        C.fit("resnet50_cls", data, epochs=1, checkpoint_dir=tmp_path, seed=1, log=None)
    C.fit("resnet50_cls", data, epochs=1, checkpoint_dir=tmp_path, seed=1, resume=False, log=None)


def test_masked_location_loss_is_zero_without_labels() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    loss = C.masked_cross_entropy(logits, torch.full((4,), -1))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert not logits.grad.any()
    target = torch.tensor([0, -1, 2, -1])
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], target[[0, 2]])
    assert torch.isclose(C.masked_cross_entropy(logits, target), expected)


def test_vgg_loss_uses_only_the_any_logit() -> None:
    logits = torch.zeros(2, 6, requires_grad=True)
    loss = C.compute_loss(RECIPES["vgg_wso"], {"logits": logits}, torch.tensor([1, 0]))
    loss.backward()
    assert logits.grad[:, 0].abs().sum() > 0 and not logits.grad[:, 1:].any()


def test_stratified_folds_balanced_and_fixed() -> None:
    labels = np.array([1] * 75 + [0] * 75)
    f = stratified_folds(labels, 5, seed=0)
    assert np.array_equal(f, stratified_folds(labels, 5, seed=0))
    for k in range(5):
        assert (f == k).sum() == 30 and labels[f == k].sum() == 15


def test_entry_points_write_weights_card_and_report(tiny_png_set, tmp_path) -> None:
    cv = crossvalidate("004", tiny_png_set, tmp_path / "cv", folds=2, epochs=1, image_size=32, log=None)
    assert len(cv["per_fold"]) == 2 and 0.0 <= cv["summary"]["accuracy"]["mean"] <= 1.0
    for name in ("report.md", "roc.png", "metrics.json", "predictions.csv"):
        assert (tmp_path / "cv" / name).exists()
    assert "mean +- SD" in (tmp_path / "cv" / "report.md").read_text()
    w = train_classifier("004", tiny_png_set, tmp_path / "w", epochs=1, image_size=32, log=None,
                         cv_metrics=tmp_path / "cv" / "metrics.json", checkpoint_dir=tmp_path / "ck")
    assert w.name == "resnet50_cls.pt" and (tmp_path / "ck" / CHECKPOINT).exists()
    assert not (tmp_path / "w" / CHECKPOINT).exists()
    card = w.with_suffix(".md").read_text()
    assert "Not for clinical use" in card and "1.0.0" in card and "cross-validation" in card
    meta = json.loads(w.with_suffix(".json").read_text())
    assert meta["image_size"] == 32 and meta["small"] is True
    state = torch.load(w, weights_only=True)
    model = C.get("004").build(small=True)
    model.load_state_dict(state)
