"""Seed 004: ResNet-50 hemorrhage yes/no."""
from __future__ import annotations

import torch
from torch import nn

from ichnode.models import registry


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_paper_config_is_resnet50():
    with torch.device("meta"):
        m = registry.build("resnet50_cls")
    net = m.net
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert net.layer1[0].conv3.out_channels == 256  # bottleneck expansion 4
    assert net.fc.in_features == 2048 and net.fc.out_features == 2
    assert n_params(m) == 23_512_130  # ~23.5 M, = torchvision resnet50(num_classes=2)


def test_paper_config_forward_small_input():
    m = registry.build("resnet50_cls").eval()
    with torch.no_grad():
        out = m(torch.rand(1, 3, 64, 64))
    assert out["logits"].shape == (1, 2)
    assert out["features"].shape == (1, 2048, 2, 2)


def test_small_forward_shapes():
    spec = registry.get("resnet50_cls")
    m = spec.build(small=True)
    out = m(torch.rand(2, *spec.input.small_shape))
    assert set(out) == set(spec.outputs)
    assert out["logits"].shape == (2, 2)
    probs = out["logits"].softmax(dim=1)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
    out["logits"].sum().backward()


def test_state_dict_roundtrip(roundtrip):
    spec = registry.get("resnet50_cls")
    roundtrip(spec.build(small=True), spec.build(small=True), torch.rand(1, *spec.input.small_shape))
