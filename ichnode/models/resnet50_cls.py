"""Seed 004: ResNet-50 hemorrhage yes/no classifier on single slices.

Input 224 x 224 x 3 with values in [0, 1]; two-class output with softmax and categorical
cross-entropy (the paper's "categorical cross entropy loss function ... for binomial classification").
Standard ResNet-50 (He et al. 2016) built from ``monai.networks.nets.ResNet`` (block "bottleneck",
layers [3, 4, 6, 3], spatial_dims=2, 7x7 stem with stride 2, projection shortcuts without bias):
23,512,130 parameters for 2 classes, the same as torchvision's ``resnet50(num_classes=2)``.
The paper fine-tunes an ImageNet-pretrained model; no pretrained weights are shipped here.

Outputs of ``forward``: ``logits`` (B, num_classes), ``features`` (B, 2048, h, w) for Grad-CAM.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import ResNet
from torch import nn

CLASSES = ("no_hemorrhage", "hemorrhage")

PAPER_CONFIG = {"in_channels": 3, "num_classes": 2, "layers": (3, 4, 6, 3), "width": 1.0}
SMALL_CONFIG = {"in_channels": 3, "num_classes": 2, "layers": (1, 1, 1, 1), "width": 0.125}


class ResNet50Classifier(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        layers: Sequence[int] = (3, 4, 6, 3),
        width: float = 1.0,
    ) -> None:
        super().__init__()
        self.net = ResNet(
            block="bottleneck",
            layers=list(layers),
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            widen_factor=width,
            num_classes=num_classes,
            feed_forward=True,
            bias_downsample=False,
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.act(n.bn1(n.conv1(x)))
        if not n.no_max_pool:
            x = n.maxpool(x)
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4:
            raise ValueError(f"expected (B, C, H, W), got {tuple(x.shape)}")
        features = self.encode(x)
        logits = self.net.fc(self.net.avgpool(features).flatten(1))
        return {"logits": logits, "features": features}
