"""Seed 001 - Fan, Lu, Fan: Dual-Task Vision Transformer (DTViT) for ICH classification.

Encoder: the ViT encoder (patches of 16 x 16, linear projection, trainable positional embedding,
pre-norm transformer blocks, class token, final LayerNorm). The paper does not restate the ViT size; the
default here is ViT-B/16 (hidden 768, 12 layers, 12 heads, MLP 3072, qkv bias, 224 x 224 x 3 input),
85.8 M encoder parameters as in Dosovitskiy et al.

Built from MONAI blocks: ``PatchEmbeddingBlock`` (``proj_type="conv"``, ``pos_embed_type="learnable"``)
and ``MLPBlock``. The self-attention is a small torch module (fused qkv projection +
``scaled_dot_product_attention``) because MONAI's ``SABlock`` / ``TransformerBlock`` / ``ViT`` need the
optional package ``einops``, which is not a dependency of ichnode.

Two MLP decoders share the class-token feature:

* ``ich_logits`` (B, 2): normal vs ICH (softmax);
* ``location_logits`` (B, 3): deep / lobar / subtentorial (= infratentorial) hemorrhage (softmax; only
  meaningful, and only trained, on ICH slices).

Each decoder is Linear -> GELU -> Dropout -> Linear. The paper says only that the features "are fed
into two fully connected layers"; the hidden width (default: the encoder width) is our choice.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import MLPBlock, PatchEmbeddingBlock
from torch import nn

ICH_CLASSES = ("normal", "ICH")
LOCATION_CLASSES = ("deep", "lobar", "infratentorial")  # the paper's "subtentorial"

PAPER_CONFIG = {
    "img_size": 224,
    "patch_size": 16,
    "in_channels": 3,
    "hidden_size": 768,
    "num_layers": 12,
    "num_heads": 12,
    "mlp_dim": 3072,
    "dropout": 0.0,
}
SMALL_CONFIG = {
    "img_size": 32,
    "patch_size": 16,
    "in_channels": 3,
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "mlp_dim": 64,
    "dropout": 0.0,
}


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (layout of ViT-B/16)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0, qkv_bias: bool = True) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=qkv_bias)
        self.out_proj = nn.Linear(hidden_size, hidden_size)
        self.dropout = dropout
        self.out_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_drop(self.out_proj(y.transpose(1, 2).reshape(b, n, d)))


class TransformerBlock(nn.Module):
    """Pre-norm ViT block: x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, hidden_size: int, mlp_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size)
        self.attn = SelfAttention(hidden_size, num_heads, dropout)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.mlp = MLPBlock(hidden_size, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Patch embedding + class token + transformer blocks + LayerNorm; returns the class-token feature."""

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        in_channels: int,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_embedding = PatchEmbeddingBlock(
            in_channels=in_channels,
            img_size=(img_size, img_size),
            patch_size=(patch_size, patch_size),
            hidden_size=hidden_size,
            num_heads=num_heads,
            proj_type="conv",
            pos_embed_type="learnable",
            dropout_rate=dropout,
            spatial_dims=2,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(
            [TransformerBlock(hidden_size, mlp_dim, num_heads, dropout) for _ in range(num_layers)]
        )
        self.norm = nn.LayerNorm(hidden_size)
        for m in self.blocks.modules():  # ViT initialisation of the transformer linears
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embedding(x)  # (B, N, D), positional embedding added
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)[:, 0]


def _mlp_head(dim: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out))


class DTViT(nn.Module):
    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_dim: int = 3072,
        dropout: float = 0.0,
        head_hidden: int | None = None,
        num_ich_classes: int = len(ICH_CLASSES),
        num_location_classes: int = len(LOCATION_CLASSES),
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.encoder = ViTEncoder(
            img_size, patch_size, in_channels, hidden_size, num_layers, num_heads, mlp_dim, dropout
        )
        hh = hidden_size if head_hidden is None else head_hidden
        self.ich_head = _mlp_head(hidden_size, hh, num_ich_classes, dropout)
        self.location_head = _mlp_head(hidden_size, hh, num_location_classes, dropout)
        self.img_size = img_size

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4 or x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"expected (B, C, {self.img_size}, {self.img_size}), got {tuple(x.shape)}")
        feature = self.encoder(x)
        return {"ich_logits": self.ich_head(feature), "location_logits": self.location_head(feature)}
