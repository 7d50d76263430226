"""One tiny training step of each synthetic loop (seeds 002, 000), resumable checkpoints, weights + cards."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ichnode.infer import deep
from ichnode.training.regress3d import (RegRecipe, fit_volume_regressor, multitask_loss, recalibrate_batchnorm,
                                        train_volume_regressor)
from ichnode.training.segment import SegRecipe, fit_segmenter, train_segmenter
from ichnode.training.synthetic import SEG_CLASSES, SliceSet, VolumeSet


def _slices(n: int = 6, size: int = 32) -> SliceSet:
    rng = np.random.default_rng(0)
    labels = np.zeros((n, size, size), np.uint8)
    labels[:, 8:14, 10:16] = rng.integers(0, len(SEG_CLASSES) + 1, n)[:, None, None]
    inputs = (0.4 + 0.45 * (labels > 0) + 0.02 * rng.standard_normal(labels.shape)).astype(np.float32)[:, None]
    return SliceSet(inputs, labels, np.arange(n, dtype=np.int32), np.zeros(n, np.int32), SEG_CLASSES, size)


def _volumes(n: int = 4) -> VolumeSet:
    rng = np.random.default_rng(1)
    return VolumeSet(rng.random((n, 1, 8, 16, 16), dtype=np.float32), rng.uniform(0, 40, n).astype(np.float32),
                     ("iph",) * n, (8, 16, 16))


def test_segmenter_step_and_resume(tmp_path) -> None:
    data = _slices()
    recipe = SegRecipe(batch_size=4)
    a = fit_segmenter(data, epochs=1, checkpoint_dir=tmp_path, recipe=recipe, log=None)
    assert a.resumed_from == 0 and len(a.history) == 1 and np.isfinite(a.history[0]["loss"])
    assert a.config["num_classes"] == len(SEG_CLASSES)
    out = a.model(torch.from_numpy(data.inputs[:2]))["seg_logits"]
    assert out.shape == (2, len(SEG_CLASSES), 32, 32)
    b = fit_segmenter(data, epochs=2, checkpoint_dir=tmp_path, recipe=recipe, log=None)
    assert b.resumed_from == 1 and len(b.history) == 2
    fresh = fit_segmenter(data, epochs=2, checkpoint_dir=None, recipe=recipe, log=None)
    for k, v in fresh.model.state_dict().items():  # resumed run == uninterrupted run
        torch.testing.assert_close(v, b.model.state_dict()[k])
    with pytest.raises(ValueError, match="different run"):
        fit_segmenter(data, epochs=2, checkpoint_dir=tmp_path, recipe=recipe, seed=5, log=None)


def test_segmenter_prior_bias() -> None:
    data = _slices()
    r = fit_segmenter(data, epochs=1, checkpoint_dir=None, recipe=SegRecipe(lr=0.0, momentum=0.0), log=None)
    counts = np.bincount(data.labels.ravel(), minlength=len(SEG_CLASSES) + 1)[1:]
    freq = np.clip(counts / data.labels.size, 1e-4, 0.5)
    torch.testing.assert_close(r.model.head.bias.detach(), torch.from_numpy(np.log(freq / (1 - freq))).float())


def test_volume_regressor_step() -> None:
    data = _volumes()
    r = fit_volume_regressor(data, epochs=1, checkpoint_dir=None, recipe=RegRecipe(batch_size=2), log=None)
    assert len(r.history) == 1 and np.isfinite(r.history[0]["loss"])
    out = r.model(torch.from_numpy(data.inputs[:2]))
    assert out["volume_cbrt"].shape == (2,) and out["prognosis_logit"].shape == (2,)
    assert not r.model.training  # recalibrated and left in eval mode


def test_multitask_loss_masks_missing_outcome() -> None:
    out = {"volume_cbrt": torch.tensor([3.0, 4.0], requires_grad=True),
           "prognosis_logit": torch.tensor([0.3, -2.0], requires_grad=True)}
    target = torch.tensor([3.0, 2.0])
    loss = multitask_loss(out, target, torch.tensor([-1, -1]))
    assert float(loss.detach()) == pytest.approx(2.0)  # MSE only
    loss.backward()
    assert float(out["prognosis_logit"].grad.abs().sum()) == 0.0  # the untrained head gets no gradient
    with_label = multitask_loss(out, target, torch.tensor([1, -1]))
    assert float(with_label.detach()) > 2.0


def test_recalibrate_batchnorm_is_deterministic() -> None:
    from ichnode.models.registry import get

    model = get("resnet3d_multitask").build(small=True)
    x = np.random.default_rng(0).random((4, 1, 8, 16, 16), dtype=np.float32)
    recalibrate_batchnorm(model, x, batch_size=2)
    first = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    recalibrate_batchnorm(model, x, batch_size=2)
    for k, v in first.items():
        torch.testing.assert_close(model.state_dict()[k], v)


def test_train_functions_write_loadable_weights(tmp_path) -> None:
    """The public entry points on 2-3 tiny phantoms: weights + sidecar + card that the engines load."""
    seg = train_segmenter(tmp_path / "w", n_phantoms=2, epochs=1, image_size=32, classes=("IPH", "EDH", "SDH"),
                          checkpoint_dir=tmp_path / "c2", log=None)
    reg = train_volume_regressor(tmp_path / "w", n_phantoms=2, epochs=1, input_size=(8, 16, 16),
                                 checkpoint_dir=tmp_path / "c0", log=None)
    for path in (seg, reg):
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta["small"] is True and "sha256" in meta
        card = path.with_suffix(".md").read_text()
        assert "Not for clinical use" in card and "synthetic" in card
    assert json.loads(reg.with_suffix(".json").read_text())["prognosis_trained"] is False
    assert "untrained" in reg.with_suffix(".md").read_text()
    engine = deep.DenseUNetEngine(weights_dir=tmp_path / "w")
    assert engine.classes == ("IPH", "EDH", "SDH")
    model, meta = deep.load_weights("resnet3d_multitask", tmp_path / "w")
    assert meta["input_size"] == [8, 16, 16]
