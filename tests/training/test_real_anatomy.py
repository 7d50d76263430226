"""Real-anatomy 2D training data (ichnode.training.real_anatomy): slice selection, generator, tiny run.

The generator test inserts lesions into the real CQ500-CT-0 series (../shared/data/cq500-ct0), cropped to a
slab of slices to stay fast, and skips when the data are absent; the rest runs on made-up arrays.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from ichnode.training import real_anatomy as ra
from ichnode.training.loop import CHECKPOINT

from tests.helpers import SHARED_DATA
from tests.training.conftest import make_png_set

CQ500 = SHARED_DATA / "cq500-ct0"
SLAB = slice(90, 190)


def _head(n=12, size=64, spacing=(5.0, 1.0, 1.0)):
    """n slices of a disc of 30 HU brain in air, and a blood fraction block on slices 5..6."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.45) ** 2
    hu = np.where(disc, 30.0, -1000.0).astype(np.float32)[None].repeat(n, 0)
    frac = np.zeros_like(hu)
    if n > 7:
        frac[5:7, 20:30, 20:30] = 1.0  # 100 mm^2 per slice
        frac[7, 20:22, 20:22] = 1.0  # 4 mm^2: blood, but under the positive threshold
    hu = hu + frac * 40
    return hu, frac, spacing


def test_select_slices_positives_have_blood_negatives_are_far_from_it():
    hu, frac, sp = _head()
    pos, neg = ra.select_slices(hu, frac, sp, pos_area_mm2=25.0, neg_gap_mm=10.0, min_tissue_mm2=500.0)
    assert list(pos) == [5, 6]  # slice 7 has blood under 25 mm^2: neither positive nor negative
    area = ra.blood_area_mm2(frac, sp)
    assert (area[pos] >= 25).all()
    assert 7 not in neg and not set(neg) & set(range(4, 9))  # under 10 mm (2 slabs) from blood
    assert (area[neg] == 0).all() and set(neg) == {0, 1, 2, 3, 9, 10, 11}
    # a slice without enough tissue is in neither class
    hu[0] = -1000
    _, neg2 = ra.select_slices(hu, frac, sp, min_tissue_mm2=500.0)
    assert 0 not in neg2


def test_case_specs_vary_and_refuse_benchmark_seeds():
    specs = ra.case_specs(range(1000, 1020))
    assert {s.subtype for s in specs} == set(ra.SUBTYPES)
    assert len({s.volume_ml for s in specs}) > 10 and {s.mirror for s in specs} == {True, False}
    assert {s.thickness_mm for s in specs} == {None, 5.0}
    assert len({s.shift_mm for s in specs}) == 20
    with pytest.raises(ValueError):
        ra.case_specs([1000, 201])


def test_augment_hu_keeps_air_and_moves_the_head():
    hu, _, _ = _head(n=1, size=96)
    rng = np.random.default_rng(3)
    out = ra.augment_hu(hu[0], 1.0, rng)
    assert out.shape == hu[0].shape and np.isfinite(out).all()
    assert abs(np.median(out[out > -500]) - 30) < 6  # brain stays brain (gain/offset/noise are small)
    assert not np.array_equal(out > -500, hu[0] > -500)  # position / rotation / size changed
    again = ra.augment_hu(hu[0], 1.0, np.random.default_rng(3))
    assert np.array_equal(out, again)


@pytest.fixture(scope="module")
def background():
    if not CQ500.is_dir():
        pytest.skip(f"real data absent: {CQ500}")
    from ichnode.synth.insert import load_background_volume, prepare_background

    vol = load_background_volume(CQ500)
    vol = replace(vol, hu=np.ascontiguousarray(vol.hu[SLAB]), datasets=vol.datasets[SLAB])
    return prepare_background(vol)


def test_generator_gives_positives_with_blood_and_negatives_without(background, tmp_path):
    out = tmp_path / "bank.npz"
    bank = ra.generate([1000, 1001], out, background=background, size=64, max_per_case=4,
                       with_background=True, paired_negatives=True, log=lambda _l: None)
    loaded = ra.SliceBank.load(out)
    assert len(loaded) == len(bank) and loaded.hu.shape[1:] == (64, 64)
    pos, neg = loaded.labels == 1, loaded.labels == 0
    assert pos.sum() >= 2 and neg.sum() >= 2
    assert (loaded.area_mm2[pos] >= ra.POS_AREA_MM2).all()
    assert (loaded.area_mm2[neg] == 0).all()
    assert any(i.startswith("bg-") for i in np.asarray(loaded.ids)[neg])
    # the positive slices are denser than the background slice at the same place: blood was inserted
    case_pos = [k for k, i in enumerate(loaded.ids) if i.startswith("s1000") and loaded.labels[k] == 1]
    assert case_pos and max(float(np.percentile(loaded.hu[k], 99.0)) for k in case_pos) > 40
    assert loaded.meta["seeds"] == [1000, 1001] and len(loaded.meta["cases"]) == 2
    # paired negatives: the lesion-free slice at each positive's z, equal outside the lesion, no blood
    ids = list(loaded.ids)
    for k in case_pos:
        name, z = ids[k].rsplit("/z", 1)
        j = ids.index(f"{name}-pair/z{z}")
        assert loaded.labels[j] == 0 and loaded.area_mm2[j] == 0
        diff = np.abs(loaded.hu[k] - loaded.hu[j])
        assert 0 < (diff > 5).mean() < 0.2  # the lesion differs, most of the slice does not


def _tiny_bank(n=6):
    hu, frac, sp = _head(n=12, size=48, spacing=(5.0, 1.0, 1.0))
    b = ra.bank_from_volume(hu, frac, sp, "t", max_per_case=n, size=48, min_tissue_mm2=500.0)
    return b


def test_tiny_run_writes_checkpoint_and_resumes(tmp_path):
    png = make_png_set(tmp_path / "png", n=10)
    bank = _tiny_bank()
    assert set(bank.labels) == {0, 1}
    cfg = ra.RunConfig("resnet50_cls", image_size=32, epochs=1, small=True, copies=1)
    weights = ra.train_final(cfg, bank, tmp_path / "out", data_dir=png, log=lambda _l: None)
    ckpt = tmp_path / "out" / "checkpoints" / CHECKPOINT
    assert weights.is_file() and ckpt.is_file()
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1
    lines = []
    cfg2 = replace(cfg, epochs=2)
    ra.train_final(cfg2, bank, tmp_path / "out", data_dir=png, log=lines.append)
    assert any("resumed" in line and "after epoch 1" in line for line in lines)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    meta = __import__("json").loads(weights.with_suffix(".json").read_text())
    assert 0.0 <= meta["threshold"] <= 1.0 and meta["n_real"] == len(bank)
    from ichnode.infer.deep import load_weights

    model, _ = load_weights("resnet50_cls", tmp_path / "out")
    x = torch.zeros(1, 3, 32, 32)
    assert model(x)["logits"].shape == (1, 2)


def test_crossval_never_trains_on_the_png_test_fold(tmp_path):
    png = make_png_set(tmp_path / "png", n=10)
    bank = _tiny_bank()
    cfg = ra.RunConfig("resnet50_cls", image_size=32, epochs=1, small=True, copies=1)
    seen = []
    orig = ra.fit

    def spy(spec, train, **kw):
        seen.append(list(train.ids))
        return orig(spec, train, **kw)

    ra.fit = spy
    try:
        m = ra.crossvalidate(cfg, bank, tmp_path / "cv", data_dir=png, folds=2, heldout=bank,
                             log=lambda _l: None)
    finally:
        ra.fit = orig
    from ichnode.training.crossval import stratified_folds
    from ichnode.training.png_dataset import read_labels

    rows = read_labels(png)
    folds = stratified_folds(np.array([y for _, y in rows]), 2, 0)
    for k, ids in enumerate(seen):
        test_ids = {rows[i][0] for i in np.flatnonzero(folds == k)}
        assert not test_ids & set(ids)
        assert sum(i.startswith("t/") for i in ids) == len(bank)
    acc = m["png_pooled"]["accuracy"]
    assert acc["n"] == 10 and acc["ci95"][0] <= acc["p"] <= acc["ci95"][1]
