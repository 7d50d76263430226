"""Heatmaps that explain a prediction.

* :func:`grad_cam` - Grad-CAM (Selvaraju et al. 2017) as seed 000 uses it on the last convolutional
  layer: channel weights ``w_k = mean(d y / d A_k)`` over the feature map, ``ReLU(sum_k w_k A_k)``. Works
  for 2D and 3D networks whose ``forward`` returns the last conv feature map under ``"features"``
  (``ResNet3DMultiTask``, ``ResNet50Classifier``, ``VGG16WSO``).
* :func:`cam_heatmap` - class activation map (Zhou et al. 2016) of seed 003 from the network's ``"cam"``
  output, up-sampled to the input size.
* :func:`cam_box` - seed 003's weakly supervised box: threshold at 20 % of the maximum of the heatmap,
  keep the largest connected region, return its bounding rectangle.

Heatmaps are ``ReLU(map) / max`` (so 0 stays 0 and the 20 % threshold is 20 % of the maximum
activation), up-sampled (bi/tri)linearly to the input size, float in [0, 1]; an all-zero map stays zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn


def _upsample(maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """(B, *s) -> (B, *size) linear interpolation."""
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=tuple(size), mode=mode, align_corners=False)[:, 0]


def normalize_heatmap(maps: torch.Tensor) -> torch.Tensor:
    """Per sample: ReLU, then divide by the maximum (maps with no positive value become all zero)."""
    maps = maps.clamp(min=0)
    peak = maps.flatten(1).amax(dim=1).view(-1, *([1] * (maps.ndim - 1)))
    return torch.where(peak > 0, maps / peak.clamp(min=torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target: str = "volume_cbrt",
    index: int | None = None,
    features_key: str = "features",
) -> torch.Tensor:
    """Grad-CAM heatmap of ``model`` for output ``target`` (class ``index`` where the output has a class
    axis; a regression output (B,) needs none). Returns (B, *input spatial) in [0, 1], detached.

    The caller chooses train/eval mode (use eval for inference); gradients are enabled here.
    """
    # the input requires grad so the feature map is in the graph even for frozen weights
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        if features_key not in out:
            raise KeyError(f"model output has no {features_key!r}; Grad-CAM needs the last conv feature map")
        features = out[features_key]
        score = out[target]
        if score.ndim == 2:
            if index is None:
                raise ValueError(f"output {target!r} has {score.shape[1]} classes: pass index")
            score = score[:, index]
        elif score.ndim != 1:
            raise ValueError(f"output {target!r} has shape {tuple(score.shape)}; expected (B,) or (B, K)")
        (grads,) = torch.autograd.grad(score.sum(), features)
    spatial = tuple(range(2, features.ndim))
    weights = grads.mean(dim=spatial, keepdim=True)  # w_k = 1/Z sum dy/dA_k
    cam = (weights * features).sum(dim=1).detach()  # ReLU applied in normalize_heatmap
    cam = normalize_heatmap(cam)
    return normalize_heatmap(_upsample(cam, tuple(x.shape[2:])))


def cam_heatmap(cam: torch.Tensor, index: int, size: tuple[int, ...]) -> torch.Tensor:
    """Seed 003: class ``index`` of the network's ``cam`` output (B, K, h, w) -> (B, *size) in [0, 1]."""
    maps = normalize_heatmap(cam[:, index].detach())
    return normalize_heatmap(_upsample(maps, tuple(size)))


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixel indices: rows y0 <= y < y1, columns x0 <= x < x1."""

    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def area(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def cam_box(heatmap: np.ndarray | torch.Tensor, rel_threshold: float = 0.2) -> Box | None:
    """Threshold at ``rel_threshold`` x maximum, keep the largest 8-connected region, return its box.

    ``heatmap``: one (H, W) map. Returns None when nothing is above zero.
    """
    h = heatmap.detach().cpu().numpy() if isinstance(heatmap, torch.Tensor) else np.asarray(heatmap)
    if h.ndim != 2:
        raise ValueError(f"cam_box expects one (H, W) heatmap, got shape {h.shape}")
    peak = float(np.max(h)) if h.size else 0.0
    if not peak > 0:
        return None
    mask = h >= rel_threshold * peak
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    ys, xs = np.nonzero(labels == int(np.argmax(sizes)))
    return Box(int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
