"""Seed 002: Dense U-Net segmentation."""
from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DenseNet121
from monai.networks.nets.densenet import _DenseLayer
from torch import nn

from ichnode.domain import SUBTYPES
from ichnode.models import registry


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_paper_config_dense_blocks():
    with torch.device("meta"):
        m = registry.build("dense_unet")
    units = [sum(isinstance(x, _DenseLayer) for x in b.modules()) for b in m.blocks]
    assert units == [3, 6, 12, 8]  # "3, 6, 12, and 8 dense units"
    growth = {layer.layers.conv2.out_channels for b in m.blocks for layer in b.children()}
    assert growth == {32}  # "growth rate of 32"
    assert m.head.out_channels == 3  # ICH (IPH), EDH, SDH
    encoder = n_params(m.stem) + n_params(m.blocks) + n_params(m.transitions)
    assert encoder == 2_436_640
    # "half of the dense units of DenseNet-121 (29 vs. 58) ... halved the model parameters": fewer than half
    with torch.device("meta"):
        densenet121 = DenseNet121(spatial_dims=2, in_channels=1, out_channels=3)
    assert encoder < n_params(densenet121.features) / 2
    assert n_params(m) == 5_096_643


def test_paper_config_forward_small_input():
    m = registry.build("dense_unet").eval()
    with torch.no_grad():
        out = m(torch.rand(1, 1, 64, 64))
    assert out["seg_logits"].shape == (1, 3, 64, 64)


def test_small_forward_shapes():
    spec = registry.get("dense_unet")
    m = spec.build(small=True)
    out = m(torch.rand(2, *spec.input.small_shape))
    assert set(out) == set(spec.outputs)
    assert out["seg_logits"].shape == (2, 3, *spec.input.small_shape[1:])
    out["seg_logits"].sum().backward()


def test_configurable_classes_five_subtypes():
    m = registry.build("dense_unet", small=True, num_classes=len(SUBTYPES)).eval()
    with torch.no_grad():
        out = m(torch.rand(1, 1, 96, 64))
    assert out["seg_logits"].shape == (1, 5, 96, 64)


def test_rejects_size_not_multiple_of_32():
    with pytest.raises(ValueError):
        registry.build("dense_unet", small=True)(torch.rand(1, 1, 50, 64))


def test_state_dict_roundtrip(roundtrip):
    spec = registry.get("dense_unet")
    roundtrip(spec.build(small=True), spec.build(small=True), torch.rand(1, *spec.input.small_shape))
