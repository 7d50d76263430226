"""Seed 001: dual-task ViT-B/16."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ichnode.models import registry
from ichnode.models.dtvit import ICH_CLASSES, LOCATION_CLASSES, SelfAttention


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_paper_config_is_vit_b16():
    with torch.device("meta"):
        m = registry.build("dtvit")
    enc = m.encoder
    assert len(enc.blocks) == 12
    assert enc.patch_embedding.patch_embeddings.kernel_size == (16, 16)
    assert enc.patch_embedding.position_embeddings.shape == (1, 196, 768)  # (224/16)^2 patches
    assert enc.blocks[0].attn.num_heads == 12
    assert enc.blocks[0].mlp.linear1.out_features == 3072
    # ViT-B/16 encoder: 85.8 M (Dosovitskiy et al.; the class token has no position embedding here)
    assert n_params(enc) == 85_797_888
    assert abs(n_params(enc) / 1e6 - 85.8) < 0.05
    heads = n_params(m.ich_head) + n_params(m.location_head)
    assert heads == 2 * (768 * 768 + 768) + (768 * 2 + 2) + (768 * 3 + 3)


def test_paper_config_forward():
    m = registry.build("dtvit").eval()
    with torch.no_grad():
        out = m(torch.randn(1, 3, 224, 224))
    assert out["ich_logits"].shape == (1, len(ICH_CLASSES))
    assert out["location_logits"].shape == (1, len(LOCATION_CLASSES))


def test_small_forward_shapes():
    spec = registry.get("dtvit")
    m = spec.build(small=True)
    out = m(torch.randn(2, *spec.input.small_shape))
    assert set(out) == set(spec.outputs)
    assert out["ich_logits"].shape == (2, 2)
    assert out["location_logits"].shape == (2, 3)
    (out["ich_logits"].sum() + out["location_logits"].sum()).backward()


def test_rejects_wrong_size():
    m = registry.build("dtvit", small=True)
    with pytest.raises(ValueError):
        m(torch.randn(1, 3, 48, 48))


def test_attention_matches_definition():
    attn = SelfAttention(hidden_size=8, num_heads=2).eval()
    x = torch.randn(2, 5, 8)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    heads = [slice(0, 4), slice(4, 8)]
    ys = []
    for h in heads:
        w = torch.softmax(q[..., h] @ k[..., h].transpose(1, 2) / math.sqrt(4), dim=-1)
        ys.append(w @ v[..., h])
    expected = attn.out_proj(torch.cat(ys, dim=-1))
    with torch.no_grad():
        torch.testing.assert_close(attn(x), expected.detach(), rtol=1e-5, atol=1e-6)


def test_state_dict_roundtrip(roundtrip):
    spec = registry.get("dtvit")
    roundtrip(spec.build(small=True), spec.build(small=True), torch.randn(1, *spec.input.small_shape))
