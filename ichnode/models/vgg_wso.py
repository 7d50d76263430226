"""Seed 003 - He, Xu, Zhou, Zhang 2024 (Heliyon e30270): VGG-16 with window-setting optimisation and
attention-based multiscale feature fusion, for ICH classification and weakly supervised localisation.

1. Window-setting optimisation (WSO, section 2.1.1, after Lee et al. 2018): a 1x1 convolution from the
   HU slice to one channel per window followed by ``F(x) = U / (1 + exp(-(W x + b)))`` with
   ``W = 2/WW * ln(U/eps - 1)`` and ``b = -2 WL/WW * ln(U/eps - 1)``; i.e.
   ``U * sigmoid((x - WL) * k / WW)`` with the scale ``k = 2 ln(U/eps - 1)``, so the window edges
   ``WL -+ WW/2`` map to ``eps`` and ``U - eps``. The paper's Table 2 fixes ``U = 255, eps = 1``
   (``k = 2 ln 254 = 11.0747``: brain window W = 0.13843335 = k/80); its brain ``b`` is printed as
   +5.537, a sign slip (the formula and the other two columns give -k*WL/WW = -5.537). Three windows,
   initialised brain (WW 80, WL 40), subdural (200, 80), soft tissue (380, 40), replace VGG-16's RGB
   input. The weights train with the network; :meth:`WindowSettingOptimization.windows` inverts
   Eq. 3.1 to report the learned (WW, WL).
2. VGG-16 convolutional part (13 3x3 conv + ReLU, 5 max pools, ~14.7 M parameters).
3. Multiscale fusion: C3, C4, C5 are the outputs of the 3rd, 4th and 5th convolution stages (before
   their max pool, at 1/4, 1/8, 1/16); stride-2 3x3 convolutions bring C3 (two of them) and C4 (one) to
   the size of C5; the three maps are concatenated, recalibrated by SE channel attention whose squeeze
   uses both global average and global max pooling (shared bottleneck MLP, reduction 16, sigmoid), then
   by spatial attention (channel-wise mean and max, 7x7 conv, sigmoid).
4. GAP + one linear output layer: 6 logits (any, EDH, IPH, IVH, SAH, SDH; sigmoid each).
5. CAM: the output-layer weights applied to the attended feature map, ``cam`` (B, 6, h, w); see
   ``ichnode.models.explain`` for the 20 % threshold -> largest component -> box.

Choices where the paper is silent: which side of the pools C3-C5 are taken, the channels of the
stride-2 convolutions (kept equal to their input), the SE reduction (16, as in the SE paper), no batch
normalisation (original VGG-16), input size (512, the RSNA matrix). ``upper=1, epsilon=1/255`` gives
the same window weights with inputs in [0, 1] instead of [0, 255] if training prefers that scale.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

CLASSES = ("any", "EDH", "IPH", "IVH", "SAH", "SDH")
PAPER_WINDOWS = ((80.0, 40.0), (200.0, 80.0), (380.0, 40.0))  # (WW, WL): brain, subdural, soft tissue
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

PAPER_CONFIG = {
    "num_classes": 6,
    "windows": PAPER_WINDOWS,
    "upper": 255.0,
    "epsilon": 1.0,
    "width": 1.0,
    "se_reduction": 16,
}
SMALL_CONFIG = {**PAPER_CONFIG, "width": 0.0625, "se_reduction": 4}


class WindowSettingOptimization(nn.Module):
    """1x1 conv (1 -> n windows) + ``U * sigmoid``; initialised so each channel reproduces a window."""

    def __init__(
        self,
        windows: Sequence[tuple[float, float]] = PAPER_WINDOWS,
        upper: float = 255.0,
        epsilon: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 < epsilon < upper / 2:
            raise ValueError("need 0 < epsilon < upper / 2")
        self.upper = float(upper)
        self.epsilon = float(epsilon)
        self.scale = 2.0 * math.log(upper / epsilon - 1.0)  # k
        self.conv = nn.Conv2d(1, len(windows), kernel_size=1)
        self.reset_windows(windows)

    @torch.no_grad()
    def reset_windows(self, windows: Sequence[tuple[float, float]]) -> None:
        windows = [(float(w), float(level)) for w, level in windows]
        if len(windows) != self.conv.out_channels or any(w <= 0 for w, _ in windows):
            raise ValueError(f"need {self.conv.out_channels} windows with positive widths, got {windows}")
        weight = [self.scale / w for w, _ in windows]
        bias = [-self.scale * level / w for w, level in windows]
        self.conv.weight.copy_(torch.tensor(weight).view(-1, 1, 1, 1))
        self.conv.bias.copy_(torch.tensor(bias))

    @torch.no_grad()
    def windows(self) -> list[tuple[float, float]]:
        """Current (WW, WL) per channel, from Eq. 3.1: WW = k / W, WL = -b / W."""
        w = self.conv.weight.detach().flatten().double()
        b = self.conv.bias.detach().double()
        return [(float(self.scale / wi), float(-bi / wi)) for wi, bi in zip(w, b)]

    def forward(self, hu: torch.Tensor) -> torch.Tensor:
        return self.upper * torch.sigmoid(self.conv(hu))


class ChannelAttention(nn.Module):
    """SE recalibration with average- and max-pooled squeeze through one shared bottleneck."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = torch.mean(x, dim=(2, 3), keepdim=True)
        mx = torch.amax(x, dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.mlp(avg) + self.mlp(mx))


class SpatialAttention(nn.Module):
    """M_s(F) = sigmoid(conv7x7([mean_c F, max_c F])) (Eq. 3.5)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), dim=1)
        return x * torch.sigmoid(self.conv(desc))


def _conv_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1), nn.ReLU(inplace=True)]


class VGG16WSO(nn.Module):
    def __init__(
        self,
        num_classes: int = 6,
        windows: Sequence[tuple[float, float]] = PAPER_WINDOWS,
        upper: float = 255.0,
        epsilon: float = 1.0,
        width: float = 1.0,
        se_reduction: int = 16,
    ) -> None:
        super().__init__()
        self.wso = WindowSettingOptimization(windows, upper, epsilon)
        cin = len(windows)
        stages = []
        for i, widths in enumerate(VGG16_STAGES):
            layers: list[nn.Module] = [nn.MaxPool2d(2, 2)] if i > 0 else []
            for w in widths:
                cout = max(1, int(round(w * width)))
                layers += _conv_relu(cin, cout)
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)  # stage i>0 starts with the pool of the previous stage
        self.pool5 = nn.MaxPool2d(2, 2)  # part of VGG-16; unused by the fusion path
        c3, c4, c5 = (max(1, int(round(s[-1] * width))) for s in VGG16_STAGES[2:])
        self.down3 = nn.Sequential(*_conv_relu(c3, c3, 2), *_conv_relu(c3, c3, 2))
        self.down4 = nn.Sequential(*_conv_relu(c4, c4, 2))
        fused = c3 + c4 + c5
        self.channel_attention = ChannelAttention(fused, se_reduction)
        self.spatial_attention = SpatialAttention(7)
        self.classifier = nn.Linear(fused, num_classes)
        self.feature_channels = fused
        for m in self.modules():  # VGG initialisation (as torchvision); the WSO keeps its window init
            if isinstance(m, nn.Conv2d) and m is not self.wso.conv:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def backbone_parameters(self) -> int:
        """Parameters of the VGG-16 convolutional part (for comparison with the 14.7 M of VGG-16)."""
        return sum(p.numel() for p in self.stages.parameters())

    def forward(self, hu: torch.Tensor) -> dict[str, torch.Tensor]:
        if hu.ndim != 4 or hu.shape[1] != 1 or hu.shape[-1] % 16 or hu.shape[-2] % 16:
            raise ValueError(f"expected (B, 1, H, W) in HU with H, W multiples of 16, got {tuple(hu.shape)}")
        h = self.wso(hu)
        feats = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        c3, c4, c5 = feats[2], feats[3], feats[4]
        fused = torch.cat((self.down3(c3), self.down4(c4), c5), dim=1)
        attended = self.spatial_attention(self.channel_attention(fused))
        logits = self.classifier(attended.mean(dim=(2, 3)))
        cam = torch.einsum("kc,bchw->bkhw", self.classifier.weight, attended)
        return {"logits": logits, "cam": cam, "features": attended}
