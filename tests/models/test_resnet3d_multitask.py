"""Seed 000: multi-task 3D ResNet-34 (volume cube root + prognosis)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ichnode.models import registry
from ichnode.models.resnet3d_multitask import ResNet3DMultiTask, cbrt_mm_to_ml, ml_to_cbrt_mm


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_paper_config_is_3d_resnet34():
    with torch.device("meta"):
        m = registry.build("resnet3d_multitask")
    enc = m.encoder
    assert [len(getattr(enc, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]  # ResNet-34
    assert enc.conv1.kernel_size == (7, 7, 7) and enc.conv1.out_channels == 64  # "7x7x7, 64 filters"
    assert enc.maxpool.kernel_size == 3 and enc.maxpool.stride == 2  # "3x3x3, stride 2"
    assert isinstance(enc.layer1[0].conv1, nn.Conv3d) and enc.layer1[0].conv1.kernel_size == (3, 3, 3)
    assert m.feature_channels == 512
    # heads are 1x1x1 convolutions on the pooled feature (dense layers as convolutions)
    assert m.volume_head.kernel_size == (1, 1, 1) and m.prognosis_head.kernel_size == (1, 1, 1)
    # 3D ResNet-34 encoder (no parameter count in the paper): 63.47 M; + two 513-parameter heads
    assert n_params(enc) == 63_469_632
    assert n_params(m) == 63_469_632 + 2 * 513


def test_paper_config_forward_small_input():
    m = registry.build("resnet3d_multitask").eval()
    with torch.no_grad():
        out = m(torch.rand(1, 1, 8, 32, 32))
    assert out["volume_cbrt"].shape == (1,) and out["prognosis_logit"].shape == (1,)
    assert out["features"].shape[:2] == (1, 512)


def test_small_forward_shapes():
    spec = registry.get("resnet3d_multitask")
    m = spec.build(small=True)
    x = torch.rand(2, *spec.input.small_shape)
    out = m(x)
    assert set(out) == set(spec.outputs)
    assert out["volume_cbrt"].shape == (2,)
    assert out["prognosis_logit"].shape == (2,)
    assert out["features"].ndim == 5 and out["features"].shape[:2] == (2, m.feature_channels)
    (out["volume_cbrt"].sum() + out["prognosis_logit"].sum()).backward()  # trainable end to end


def test_stem_keeps_slices_for_grad_cam():
    m = ResNet3DMultiTask(layers=(1, 1, 1, 1), width=0.125).eval()
    with torch.no_grad():
        f = m(torch.rand(1, 1, 32, 64, 64))["features"]
    assert f.shape[2:] == (2, 2, 2)  # 32 slices -> 2 at stage 4 (stem stride (1, 2, 2))


def test_rejects_2d_input():
    with pytest.raises(ValueError):
        registry.build("resnet3d_multitask", small=True)(torch.rand(1, 1, 32, 32))


def test_volume_cube_root_conversion():
    ml = torch.tensor([0.0, 1.0, 27.0, 64.0])
    cbrt = ml_to_cbrt_mm(ml)
    torch.testing.assert_close(cbrt, torch.tensor([0.0, 10.0, 30.0, 40.0]))
    torch.testing.assert_close(cbrt_mm_to_ml(cbrt), ml)
    assert cbrt_mm_to_ml(torch.tensor([-5.0])).item() == 0.0


def test_state_dict_roundtrip(roundtrip):
    spec = registry.get("resnet3d_multitask")
    roundtrip(spec.build(small=True), spec.build(small=True), torch.rand(1, *spec.input.small_shape))
