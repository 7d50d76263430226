"""Seed 000 - Gong et al. 2023 (Front. Neurosci. 17:1118340): multi-task 3D ResNet-34.

A shared 3D ResNet-34 encoder (stem: 7x7x7 convolution with 64 filters, 3x3x3 max pooling with
stride 2; four stages of basic residual blocks [3, 4, 6, 3] with 64/128/256/512 filters, zero padding,
batch normalisation after every convolution) feeds two heads. "Dense layers are implemented as
convolutions with the size of 1x1x1":

* regression head: global average pooling + one 1x1x1 convolution -> the cube root of the hematoma
  volume. The paper regresses the cube root of the volume "converted to the ICH size (millimeter)", i.e.
  ``cbrt(volume in mm^3)``; :func:`cbrt_mm_to_ml` converts back.
* classification head: global average pooling + one 1x1x1 convolution -> one logit for death
  (``sigmoid`` gives the prognosis probability; the paper's loss is binary cross-entropy).

Grad-CAM uses the last convolutional layer (output of stage 4, returned as ``features``).

Built from ``monai.networks.nets.ResNet`` (block "basic", layers [3, 4, 6, 3], spatial_dims=3).
Choices where the paper is silent:

* stem stride (1, 2, 2) as in the 3D ResNets of Hara et al. (kernel 7x7x7): the 32-slice input keeps
  2 slices at stage 4 instead of 1, so the Grad-CAM map still varies along z;
* no ReLU on the classification output: the paper lists "a linear layer and a ReLU" before the softmax,
  but a ReLU before a sigmoid/softmax over one logit would forbid probabilities below 0.5.

Outputs of ``forward``: ``volume_cbrt`` (B,), ``prognosis_logit`` (B,), ``features`` (B, C, d, h, w).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import ResNet
from torch import nn

PAPER_CONFIG = {
    "in_channels": 1,
    "layers": (3, 4, 6, 3),
    "width": 1.0,
    "stem_stride": (1, 2, 2),
}
SMALL_CONFIG = {"in_channels": 1, "layers": (1, 1, 1, 1), "width": 0.125, "stem_stride": (1, 2, 2)}


def cbrt_mm_to_ml(volume_cbrt: torch.Tensor) -> torch.Tensor:
    """Regression output (cube root of mm^3) -> millilitres; negative outputs count as 0 ml."""
    return volume_cbrt.clamp(min=0) ** 3 / 1000.0


def ml_to_cbrt_mm(volume_ml: torch.Tensor) -> torch.Tensor:
    """Training target: millilitres -> cube root of mm^3 (the paper's 'ICH size' in mm)."""
    return torch.as_tensor(volume_ml, dtype=torch.float32).clamp(min=0).mul(1000.0).pow(1.0 / 3.0)


class ResNet3DMultiTask(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        layers: Sequence[int] = (3, 4, 6, 3),
        width: float = 1.0,
        stem_stride: int | Sequence[int] = (1, 2, 2),
    ) -> None:
        super().__init__()
        self.encoder = ResNet(
            block="basic",
            layers=list(layers),
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=3,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=tuple(stem_stride) if not isinstance(stem_stride, int) else stem_stride,
            shortcut_type="B",
            widen_factor=width,
            feed_forward=False,
            bias_downsample=False,
        )
        channels = int(512 * width)
        self.feature_channels = channels
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.volume_head = nn.Conv3d(channels, 1, kernel_size=1)
        self.prognosis_head = nn.Conv3d(channels, 1, kernel_size=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        x = e.act(e.bn1(e.conv1(x)))
        if not e.no_max_pool:
            x = e.maxpool(x)
        return e.layer4(e.layer3(e.layer2(e.layer1(x))))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, D, H, W), got {tuple(x.shape)}")
        features = self.encode(x)
        pooled = self.pool(features)
        return {
            "volume_cbrt": self.volume_head(pooled).flatten(1)[:, 0],
            "prognosis_logit": self.prognosis_head(pooled).flatten(1)[:, 0],
            "features": features,
        }
