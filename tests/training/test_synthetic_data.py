"""Phantom data sets of the synthetic training (ichnode.training.synthetic): shapes, targets, seeds."""
from __future__ import annotations

import numpy as np

from ichnode.training.synthetic import (EVAL_SEED_START, SEG_CLASSES, TRAIN_SEED_START, build_slice_set,
                                        build_volume_set, downsample_labels, render, sample_specs, truth_classes)


def test_sample_specs_deterministic_and_disjoint() -> None:
    a, b = sample_specs(14, seed=3), sample_specs(14, seed=3)
    assert a == b
    assert [s.subtype for s in a[:7]] == ["iph", "iph", "ivh", "sah", "sdh", "edh", "none"]
    assert all(s.volume_ml == 0 for s in a if s.subtype == "none")
    assert all(2.0 <= s.volume_ml <= 80.0 for s in a if s.subtype != "none")
    assert {s.seed for s in a} == set(range(TRAIN_SEED_START, TRAIN_SEED_START + 14))
    held_out = sample_specs(14, seed=3, seed_start=EVAL_SEED_START)
    assert not {s.seed for s in a} & {s.seed for s in held_out}


def test_downsample_labels_block_majority() -> None:
    lab = np.zeros((1, 8, 8), np.uint8)
    lab[0, :2, :2] = 3  # one full 2x2 block
    lab[0, 4, 4] = 2  # a quarter of a block: dropped
    out = downsample_labels(lab, 4)
    assert out.shape == (1, 4, 4) and out[0, 0, 0] == 3 and out.sum() == 3
    assert downsample_labels(lab, 8) is not lab and (downsample_labels(lab, 8) == lab).all()
    assert downsample_labels(np.zeros((2, 9, 9), np.uint8), 4).shape == (2, 4, 4)  # non-integer factor


def test_slice_set_shapes_and_targets() -> None:
    specs = [s for s in sample_specs(7, seed=0, matrices=(64,), thicknesses=(10.0,))]
    data = build_slice_set(specs, image_size=32, max_positive=3, negatives=1)
    n = len(data)
    assert data.inputs.shape == (n, 1, 32, 32) and data.inputs.dtype == np.float32
    assert data.labels.shape == (n, 32, 32) and data.labels.dtype == np.uint8
    assert 0.0 <= data.inputs.min() and data.inputs.max() <= 1.0
    assert data.classes == SEG_CLASSES
    assert int(data.labels.max()) <= len(SEG_CLASSES)
    one_hot = data.one_hot(slice(0, 3))
    assert one_hot.shape == (3, len(SEG_CLASSES), 32, 32) and set(np.unique(one_hot)) <= {0.0, 1.0}
    # each phantom contributes its own class only
    for i, spec in enumerate(specs):
        present = set(np.unique(data.labels[data.phantom == i])) - {0}
        expected = set() if spec.subtype == "none" else {SEG_CLASSES.index(spec.subtype.upper()) + 1}
        assert present <= expected


def test_truth_classes_and_volume_set() -> None:
    specs = sample_specs(3, seed=1, matrices=(64,), thicknesses=(10.0,))
    p = render(specs[0])
    t = truth_classes(p)
    assert t.shape == p.mask.shape and set(np.unique(t)) == {0, SEG_CLASSES.index("IPH") + 1}
    vs = build_volume_set(specs, (8, 16, 16))
    assert vs.inputs.shape == (3, 1, 8, 16, 16) and vs.volume_ml.shape == (3,)
    assert vs.volume_ml[0] == np.float32(p.volume_ml)
