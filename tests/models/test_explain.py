"""Grad-CAM (seed 000) and CAM box (seed 003)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ichnode.models import registry
from ichnode.models.explain import Box, cam_box, cam_heatmap, grad_cam, normalize_heatmap


class _Identity2D(nn.Module):
    """features = x, score = mean(features): Grad-CAM must give x / max(x)."""

    def forward(self, x):
        features = x * 1.0
        return {"score": features.mean(dim=(1, 2, 3)), "features": features}


def test_grad_cam_known_answer():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 2:4, 5:7] = 2.0
    x[0, 0, 6, 1] = 1.0
    h = grad_cam(_Identity2D(), x, target="score")
    torch.testing.assert_close(h, x[:, 0] / 2.0)


def test_grad_cam_resnet3d_heatmap_in_unit_range():
    m = registry.build("resnet3d_multitask", small=True).eval()
    x = torch.rand(2, 1, 16, 64, 64)
    h = grad_cam(m, x, target="volume_cbrt")
    assert h.shape == (2, 16, 64, 64)
    assert h.min() >= 0 and h.max() <= 1
    assert not h.requires_grad
    hp = grad_cam(m, x, target="prognosis_logit")
    assert hp.shape == (2, 16, 64, 64)


def test_grad_cam_2d_classifier_needs_index():
    m = registry.build("resnet50_cls", small=True).eval()
    x = torch.rand(1, 3, 64, 64)
    h = grad_cam(m, x, target="logits", index=1)
    assert h.shape == (1, 64, 64) and 0 <= h.min() and h.max() <= 1
    with pytest.raises(ValueError):
        grad_cam(m, x, target="logits")


def test_normalize_heatmap_zero_stays_zero():
    z = normalize_heatmap(torch.full((2, 4, 4), -1.0))
    assert torch.equal(z, torch.zeros(2, 4, 4))


def test_vgg_cam_heatmap_size_and_range():
    m = registry.build("vgg_wso", small=True).eval()
    with torch.no_grad():
        out = m(torch.randn(1, 1, 64, 64) * 100)
    for k in range(6):
        h = cam_heatmap(out["cam"], k, (64, 64))
        assert h.shape == (1, 64, 64) and h.min() >= 0 and h.max() <= 1


def test_cam_box_largest_component_above_20_percent():
    h = np.full((64, 64), 0.1, np.float32)  # background at 10 % of the peak: below the threshold
    h[10:20, 30:45] = 1.0  # the largest region
    h[40:43, 5:8] = 0.5  # above 20 % but smaller
    h[50:52, 50:52] = 0.15  # below 20 %
    assert cam_box(h) == Box(10, 30, 20, 45)
    assert cam_box(torch.from_numpy(h)).slices == (slice(10, 20), slice(30, 45))


def test_cam_box_gaussian_blob():
    yy, xx = np.mgrid[:64, :64]
    h = np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / (2 * 3.0**2))
    # exp(-r^2 / 18) >= 0.2  <=>  r <= 3 * sqrt(2 ln 5) = 5.38: rows 15..25, columns 35..45
    assert cam_box(h) == Box(15, 35, 26, 46)


def test_cam_box_empty():
    assert cam_box(np.zeros((8, 8))) is None
