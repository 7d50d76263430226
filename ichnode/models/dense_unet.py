"""Seed 002 - Xu et al. 2021 (Front. Neurosci. 14:541817): Dense U-Net hemorrhage segmentation.

"The DenseNet encoder consisted of 4 dense blocks, each followed by a transition layer. Each dense
block had 3, 6, 12, and 8 dense units, respectively and each dense unit had a growth rate of 32.
Feature maps extracted from each dense block were concatenated with the up-sampled maps to form a
U-Net structure." Slices are segmented one by one (2D); He-normal initialisation; binary
cross-entropy, so every class has its own sigmoid channel.

Encoder (MONAI ``_DenseBlock`` / ``_Transition``, DenseNet-BC units: BN-ReLU-1x1 conv (4k) - BN-ReLU-3x3
conv (k), transitions with compression 0.5 and 2x2 average pooling)::

    stem  7x7 conv /2, 64 ch, BN, ReLU          -> skip at 1/2
    3x3 max pool /2
    dense block 1 (3 units)  64 -> 160 ch         -> skip at 1/4,  transition -> 80 ch, /2
    dense block 2 (6 units)  80 -> 272 ch         -> skip at 1/8,  transition -> 136 ch, /2
    dense block 3 (12 units) 136 -> 520 ch        -> skip at 1/16, transition -> 260 ch, /2
    dense block 4 (8 units)  260 -> 516 ch        -> transition without pooling (BN-ReLU-1x1 conv) -> 258 ch

Decoder: per level bilinear 2x up-sampling, concatenation with the dense-block (or stem) features of
that resolution, 3x3 conv-BN-ReLU (channels 256, 128, 64, 64), a last 2x up-sampling to full
resolution with a 3x3 conv (32) and a 1x1 conv to ``num_classes`` logits.

Choices where the paper is silent (Figure 1 is not in the text): the 4th transition keeps the
resolution (so the bottleneck is at 1/32 like DenseNet-121's last block rather than 1/64), the decoder
widths, and the input (one slice windowed to [0, 1]). The paper's classes are ICH (intracerebral =
IPH), EDH and SDH; ``num_classes`` extends the head to the five subtypes.

Output of ``forward``: ``seg_logits`` (B, num_classes, H, W); H and W must be multiples of 32.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.nets.densenet import _DenseBlock, _Transition
from torch import nn

PAPER_CLASSES = ("IPH", "EDH", "SDH")  # the paper's ICH / EDH / SDH
ALL_SUBTYPE_CLASSES = ("IPH", "IVH", "SAH", "SDH", "EDH")

PAPER_CONFIG = {
    "in_channels": 1,
    "num_classes": 3,
    "block_config": (3, 6, 12, 8),
    "growth_rate": 32,
    "init_features": 64,
    "decoder_channels": (256, 128, 64, 64, 32),
    "width": 1.0,
}
SMALL_CONFIG = {**PAPER_CONFIG, "block_config": (1, 1, 1, 1), "width": 0.125}

DIVISOR = 32


class DenseUNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 3,
        block_config: Sequence[int] = (3, 6, 12, 8),
        growth_rate: int = 32,
        init_features: int = 64,
        decoder_channels: Sequence[int] = (256, 128, 64, 64, 32),
        width: float = 1.0,
        bn_size: int = 4,
        compression: float = 0.5,
    ) -> None:
        super().__init__()
        if len(block_config) != 4 or len(decoder_channels) != 5:
            raise ValueError("block_config needs 4 entries and decoder_channels 5")
        k = max(1, int(round(growth_rate * width)))
        c = max(1, int(round(init_features * width)))
        dec = [max(1, int(round(d * width))) for d in decoder_channels]
        self.num_classes = num_classes

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        skip_channels = [c]
        blocks, transitions = [], []
        for i, units in enumerate(block_config):
            blocks.append(_DenseBlock(2, units, c, bn_size, k, 0.0))
            c += units * k
            out = int(c * compression)
            if i < 3:
                skip_channels.append(c)
                transitions.append(_Transition(2, c, out))
            else:  # transition after the last block: no pooling (bottleneck stays at 1/32)
                transitions.append(
                    nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, out, 1, bias=False))
                )
            c = out
        self.blocks = nn.ModuleList(blocks)
        self.transitions = nn.ModuleList(transitions)

        def conv_bn_relu(cin: int, cout: int) -> Convolution:
            return Convolution(2, cin, cout, kernel_size=3, act="relu", norm="batch", bias=False)

        ups = []
        for skip, cout in zip(reversed(skip_channels), dec[:4]):  # 1/16, 1/8, 1/4, 1/2
            ups.append(conv_bn_relu(c + skip, cout))
            c = cout
        self.up_convs = nn.ModuleList(ups)
        self.final_conv = conv_bn_relu(c, dec[4])
        self.head = nn.Conv2d(dec[4], num_classes, kernel_size=1)

        for m in self.modules():  # He-normal initialisation (paper)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4 or x.shape[-1] % DIVISOR or x.shape[-2] % DIVISOR:
            raise ValueError(f"expected (B, C, H, W) with H, W multiples of {DIVISOR}, got {tuple(x.shape)}")
        s = self.stem(x)
        skips = [s]
        h = self.pool(s)
        for i, (block, trans) in enumerate(zip(self.blocks, self.transitions)):
            h = block(h)
            if i < 3:
                skips.append(h)
            h = trans(h)
        for conv, skip in zip(self.up_convs, reversed(skips)):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = conv(torch.cat((h, skip), dim=1))
        h = F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"seg_logits": self.head(self.final_conv(h))}
