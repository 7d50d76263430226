"""The weights trained on synthetic phantoms (dense_unet 002, resnet3d_multitask 000) ship, load and work."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from ichnode.config import EngineConfig
from ichnode.infer import deep
from ichnode.models.registry import get
from ichnode.synth import SynthSpec, make_phantom
from ichnode.training import WEIGHTS_DIR
from ichnode.training.metrics import dice

CFG = EngineConfig(device="cpu", threads=1)


@pytest.mark.parametrize("name", ["dense_unet", "resnet3d_multitask"])
def test_shipped_files(name) -> None:
    path = WEIGHTS_DIR / f"{name}.pt"
    assert path.exists() and path.stat().st_size <= 5 * 1024 * 1024
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    spec = get(name)
    assert meta["small"] is True and meta["version"] == spec.version
    spec.build(small=True, **meta["overrides"]).load_state_dict(torch.load(path, weights_only=True), strict=True)
    card = path.with_suffix(".md").read_text()
    assert "Not for clinical use" in card and spec.version in card and "synthetic" in card
    assert "Measured performance" in card and "MAE" in card
    if name == "resnet3d_multitask":
        assert meta["prognosis_trained"] is False and "untrained" in card


def test_shipped_engines_on_a_phantom() -> None:
    p = make_phantom(SynthSpec(subtype="iph", volume_ml=20.0, matrix=128, seed=424242))
    volume = p.to_volume()
    seg = deep.build_deep("dense_unet", CFG)
    assert isinstance(seg, deep.DenseUNetEngine)
    f = seg.analyse(volume)
    assert dice(f.labels > 0, p.mask) > 0.7
    assert np.bincount(f.labels[p.mask], minlength=2).argmax() == f.segment_classes.index("IPH") + 1
    reg = deep.build_deep("resnet3d_multitask", CFG)
    assert isinstance(reg, deep.VolumeRegressorEngine)
    g = reg.analyse(volume)
    assert g.prognosis_probability is None and 5.0 < g.model_volume_ml < 60.0
