"""Real-anatomy sets for the Dense U-Net and the 3D ResNet (ichnode.training.real_anatomy_volumes), and the
benchmark's scoring of a volume regressor (benchmarks/real_anatomy.py).

The generator test inserts one lesion into a slab of the real CQ500-CT-0 series (../shared/data/cq500-ct0) at
tiny network sizes and skips when the data are absent; the rest runs on made-up arrays.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ichnode.training import real_anatomy_volumes as rv

from tests.helpers import REPO, SHARED_DATA

CQ500 = SHARED_DATA / "cq500-ct0"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_real_anatomy", REPO / "benchmarks" / "real_anatomy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fraction_labels_mark_pixels_at_least_half_covered():
    frac = np.zeros((2, 8, 8), np.float32)
    frac[0, 0:2, 0:2] = 1.0  # one full 2x2 block -> blood
    frac[0, 4:6, 4:6] = 0.4  # 40 % covered -> not blood
    frac[1, 2:4, 2:4] = [[1, 1], [0, 0]]  # exactly half -> blood
    lab = rv.fraction_labels(frac, "sdh", 4)
    k = rv.SEG_CLASSES.index("SDH") + 1
    assert lab[0, 0, 0] == k and lab[0, 2, 2] == 0 and lab[1, 1, 1] == k
    assert int((lab > 0).sum()) == 2
    assert not rv.fraction_labels(frac, "none", 4).any()


def test_case_slices_pair_each_positive_with_the_clean_slice_at_the_same_z():
    n, size = 10, 64
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 28 ** 2
    plain = np.where(disc, 30.0, -1000.0).astype(np.float32)[None].repeat(n, 0)
    frac = np.zeros_like(plain)
    frac[4:6, 20:30, 20:30] = 1.0
    hu = plain + 40 * frac
    x, y, z, kind = rv.case_slices(hu, frac, "iph", (5.0, 2.0, 2.0), image_size=32, max_positive=8,
                                   case_negatives=2, plain_hu=plain)
    assert list(z[kind == "pos"]) == [4, 5] and list(z[kind == "pair"]) == [4, 5]
    assert (y[kind == "pos"] > 0).any(axis=(1, 2)).all() and not y[kind != "pos"].any()
    assert len(z[kind == "neg"]) == 2 and not frac[z[kind == "neg"]].any()
    pos, pair = x[kind == "pos"], x[kind == "pair"]
    assert pos.shape == (2, 1, 32, 32) and (pos > pair).any() and not (pos < pair).any()


def test_benchmark_scores_a_regressed_volume_without_inventing_a_mask():
    bench = _bench()
    frac = np.zeros((4, 8, 8), np.float32)
    frac[1:3, 2:6, 2:6] = 1.0  # 32 voxels
    row = bench.score_volume(frac, 40.0, 1.0)
    assert row["truth_ml"] == 32.0 and row["error_pct"] == pytest.approx(25.0)
    assert row["found"] is None and row["fp_ml"] is None
    summary = bench.summarise([{"subtype": "iph", "target_ml": 30.0, "thickness_mm": 5.0, "engine_s": 0.1, **row}])
    assert summary["found_rate_from_5ml"] is None and summary["median_fp_ml"] is None
    assert summary["median_error_pct"] == pytest.approx(25.0)
    assert bench.score_volume(np.zeros_like(frac), 3.0, 1.0)["fp_ml"] is None


def test_sets_from_the_real_background(tmp_path, monkeypatch):
    if not CQ500.is_dir():
        pytest.skip(f"real data absent: {CQ500}")
    monkeypatch.setattr(rv, "CROP_MM", 5.0)
    out = tmp_path / "sets.npz"
    sets = rv.build_sets([1000], out, image_size=32, input_size=(8, 16, 16), max_positive=4,
                         z_slab=slice(100, 180), log=lambda _l: None)
    seg, vol, meta = rv.load_sets(out)
    kind = sets["seg_kind"]
    assert (kind == "pos").sum() >= 1 and (kind == "pair").sum() == (kind == "pos").sum()
    assert (seg.labels[kind == "pos"] > 0).any(axis=(1, 2)).all() and not seg.labels[kind != "pos"].any()
    assert seg.inputs.shape[1:] == (1, 32, 32) and vol.inputs.shape[1:] == (1, 8, 16, 16)
    assert len(vol) == 13 and (vol.volume_ml[:12] == 0).all() and vol.volume_ml[12] > 1.0
    assert meta["cases"][0]["seed"] == 1000
    with pytest.raises(ValueError):
        rv.build_sets([300], tmp_path / "x.npz", log=lambda _l: None)  # a benchmark seed
