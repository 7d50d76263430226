"""Seed 003: VGG-16 + window-setting optimisation + multiscale attention fusion + CAM."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ichnode.models import registry
from ichnode.models.vgg_wso import CLASSES, PAPER_WINDOWS, WindowSettingOptimization


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_paper_config_vgg16_backbone():
    with torch.device("meta"):
        m = registry.build("vgg_wso")
    convs = [c for c in m.stages.modules() if isinstance(c, nn.Conv2d)]
    assert len(convs) == 13 and all(c.kernel_size == (3, 3) for c in convs)
    # VGG-16 convolutional part: 14.7 M (with 3 input channels = the three windows)
    assert m.backbone_parameters() == 14_714_688
    assert m.feature_channels == 256 + 512 + 512  # C3 + C4 + C5
    assert m.spatial_attention.conv.kernel_size == (7, 7)
    assert m.classifier.out_features == len(CLASSES) == 6
    assert n_params(m) == 18_467_247


def test_paper_config_forward_small_input():
    m = registry.build("vgg_wso").eval()
    with torch.no_grad():
        out = m(torch.randn(1, 1, 64, 64) * 100)
    assert out["logits"].shape == (1, 6)
    assert out["cam"].shape == (1, 6, 4, 4)  # fused at C5 resolution (1/16)


def test_wso_initial_weights_match_paper_table2():
    wso = WindowSettingOptimization()
    k = 2 * math.log(254.0)  # U = 255, eps = 1
    assert wso.scale == pytest.approx(k)
    w = wso.conv.weight.flatten()
    b = wso.conv.bias
    torch.testing.assert_close(w, torch.tensor([0.13843335, 0.05537334, 0.02914386]))
    # Table 2 prints +5.537 for the brain bias; Eq. 3.1 (and the other columns) give -k * WL / WW
    torch.testing.assert_close(b, torch.tensor([-5.5373344, -4.4298673, -1.1657546]))


def test_wso_reproduces_windows():
    wso = WindowSettingOptimization()
    for c, (ww, wl) in enumerate(PAPER_WINDOWS):
        hu = torch.tensor([wl - ww / 2, wl, wl + ww / 2, wl - 1000, wl + 1000]).view(1, 1, 5, 1)
        y = wso(hu)[0, c, :, 0]
        torch.testing.assert_close(y[:3], torch.tensor([1.0, 127.5, 254.0]), rtol=0, atol=1e-3)  # eps, U/2, U-eps
        assert y[3] < 1e-3 and y[4] > 255 - 1e-3


def test_wso_reports_learned_windows():
    wso = WindowSettingOptimization()
    for (ww, wl), (ww0, wl0) in zip(wso.windows(), PAPER_WINDOWS):
        assert ww == pytest.approx(ww0, rel=1e-5) and wl == pytest.approx(wl0, rel=1e-5)
    with torch.no_grad():  # as if training moved the brain window to WW 100, WL 50
        wso.conv.weight[0] = wso.scale / 100.0
        wso.conv.bias[0] = -wso.scale * 50.0 / 100.0
    ww, wl = wso.windows()[0]
    assert ww == pytest.approx(100.0, rel=1e-5) and wl == pytest.approx(50.0, rel=1e-5)


def test_wso_trains_with_network():
    m = registry.build("vgg_wso", small=True)
    out = m(torch.randn(2, 1, 64, 64) * 100)
    out["logits"].sum().backward()
    assert m.wso.conv.weight.grad is not None and m.wso.conv.weight.grad.abs().sum() > 0


def test_small_forward_shapes_and_cam_consistency():
    spec = registry.get("vgg_wso")
    m = spec.build(small=True).eval()
    with torch.no_grad():
        out = m(torch.randn(2, *spec.input.small_shape) * 100)
    assert set(out) == set(spec.outputs)
    assert out["logits"].shape == (2, 6)
    assert out["cam"].shape == (2, 6, 4, 4)
    # CAM: GAP of the class map + bias is the logit
    torch.testing.assert_close(out["cam"].mean(dim=(2, 3)) + m.classifier.bias, out["logits"], rtol=1e-4, atol=1e-5)


def test_rejects_multichannel_input():
    with pytest.raises(ValueError):
        registry.build("vgg_wso", small=True)(torch.randn(1, 3, 64, 64))


def test_state_dict_roundtrip(roundtrip):
    spec = registry.get("vgg_wso")
    roundtrip(spec.build(small=True), spec.build(small=True), torch.randn(1, *spec.input.small_shape) * 100)
