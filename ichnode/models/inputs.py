"""How Hounsfield units become each network's input: the one path of training, evaluation and serving.

The registry's ``InputSpec.hu_to_input`` calls the function of its network here; nothing else turns HU
into network inputs. 2D networks take a stack of axial slices ``(n, y, x)`` and give ``(n, C, h, w)``;
the 3D network takes one volume ``(z, y, x)`` and gives ``(1, 1, d, h, w)``.

=====================  ==================================================================================
network (seed)         steps
=====================  ==================================================================================
resnet3d_multitask 000 window [40, 110] HU -> [0, 1], blank border cropped (largest component, margin 2),
                       anti-aliased in-plane resize, then linear resize along z
dtvit 001              square, 8-bit brain window, resize, -> [0, 1], 3 channels, ImageNet mean / std
dense_unet 002         square, brain window [0, 80] HU -> [0, 1], anti-aliased resize
vgg_wso 003            square, 8-bit brain window, resize; stays in HU (the network windows itself)
resnet50_cls 004       square, 8-bit brain window, resize, -> [0, 1], 3 channels
=====================  ==================================================================================

* **Square**: slices are padded with air to a centred square, so resizing keeps the aspect ratio.
* **8-bit brain window**: HU clipped to the brain window and quantised to 256 levels, still in HU. The
  shipped 004 / 001 / 003 weights were trained on the head-ct-png images, which are 8-bit exports of that
  window; a CT slice reaches them as its PNG export would (``ichnode.training.png_dataset`` maps the PNG
  grey levels back to HU and comes through these same functions).
* Where a paper names no window (001, 002, 004) the brain window WL 40 / WW 80 is used. Seed 001's
  fixation-device removal (:func:`ichnode.models.preprocess.remove_fixation_device`) is not applied: it
  needs air in HU, which the 8-bit training images do not have (air and head holder are both clipped to
  0 HU there), so the shipped DTViT never saw it.

Every function returns a :class:`NetworkInput`: the array and the part of the HU array it shows, so maps
at network resolution (CAM, Grad-CAM, segmentation logits) go back onto the HU grid (``to_native``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ichnode.models import preprocess as pp

AIR_HU = -1000.0
BRAIN_WINDOW = (0.0, 80.0)  # (low, high) HU: WL 40, WW 80
ICH_WINDOW_000 = (40.0, 110.0)  # seed 000: "a brain window that clips [40, 110] HU"
PNG_LEVELS = 255.0  # highest grey level of an 8-bit image

FieldOfView = tuple[tuple[int, int], ...]  # per spatial axis: [start, stop) of the HU array shown


@dataclass(frozen=True)
class NetworkInput:
    """A network input (float32, batch axis first) and what part of the HU array it shows.

    ``field_of_view`` holds, per spatial axis of the HU array, the index range the input covers: beyond
    the array (start < 0, stop > n) where it was padded, inside it where it was cropped."""

    array: np.ndarray
    field_of_view: FieldOfView

    def to_native(self, maps: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """(B, C, *network size) maps -> (B, C, *shape) on the HU grid: linear resize to the field of view,
        padding cut away, zero where the input had been cropped away."""
        size = tuple(stop - start for start, stop in self.field_of_view)
        if tuple(maps.shape[2:]) != size:
            mode = "bilinear" if len(size) == 2 else "trilinear"
            maps = F.interpolate(maps, size=size, mode=mode, align_corners=False)
        src = tuple(slice(max(-a, 0), min(n - a, b - a)) for (a, b), n in zip(self.field_of_view, shape))
        dst = tuple(slice(max(a, 0), min(b, n)) for (a, b), n in zip(self.field_of_view, shape))
        if all(d.start == 0 and d.stop == n for d, n in zip(dst, shape)):  # padded only: a view will do
            return maps[(..., *src)]
        out = maps.new_zeros((*maps.shape[:2], *shape))
        out[(..., *dst)] = maps[(..., *src)]
        return out


# --------------------------------------------------------------------------------------------- steps
def square(slices: np.ndarray) -> tuple[np.ndarray, FieldOfView]:
    """(n, h, w) HU -> (n, s, s), s = max(h, w), padded with air around the centred slices."""
    slices = np.asarray(slices, np.float32)
    if slices.ndim != 3:
        raise ValueError(f"expected a stack of slices (n, y, x), got shape {slices.shape}")
    n, h, w = slices.shape
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    field_of_view = ((-top, s - top), (-left, s - left))
    if h == w:
        return slices, field_of_view
    out = np.full((n, s, s), AIR_HU, dtype=np.float32)
    out[:, top:top + h, left:left + w] = slices
    return out, field_of_view


def eight_bit_brain_window(hu: np.ndarray) -> np.ndarray:
    """HU clipped to the brain window and quantised to 256 levels, in HU: what an 8-bit export keeps."""
    lo, hi = BRAIN_WINDOW
    v = np.rint((np.clip(np.asarray(hu, np.float32), lo, hi) - lo) / (hi - lo) * PNG_LEVELS)
    return (v / np.float32(PNG_LEVELS) * np.float32(hi - lo) + np.float32(lo)).astype(np.float32)


def _eight_bit_slices(slices: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, FieldOfView]:
    hu, field_of_view = square(slices)
    return pp.resize(eight_bit_brain_window(hu), size), field_of_view


def _eight_bit_unit_rgb(slices: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, FieldOfView]:
    x, field_of_view = _eight_bit_slices(slices, size)
    x = pp.window(x, *BRAIN_WINDOW)[:, None]
    return np.repeat(x, 3, axis=1), field_of_view


# ---------------------------------------------------------------------------------- per network
def resnet3d_multitask_input(volume: np.ndarray, size: Sequence[int]) -> NetworkInput:
    """Seed 000. The in-plane reduction comes first and anti-aliased: a 512 matrix shrinks 8-fold, and plain
    trilinear sampling would pick noise instead of averaging it, so 128-, 256- and 512-matrix series would
    look different to the network; z is then resized linearly."""
    volume = np.asarray(volume, np.float32)
    if volume.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {volume.shape}")
    d, h, w = (int(v) for v in size)
    x = pp.window(volume, *ICH_WINDOW_000)
    # the skull is the outermost bright structure; the largest component ignores specks (table, noise)
    x, bbox = pp.crop_blank_border(x, threshold=0.0, margin=2, largest_component=True)
    x = pp.resize(x, (h, w), mode="linear")
    x = pp.resize(x, (d, h, w), mode="linear")
    field_of_view = tuple(s.indices(n)[:2] for s, n in zip(bbox, volume.shape))
    return NetworkInput(x[None, None], field_of_view)


def dtvit_input(slices: np.ndarray, size: Sequence[int]) -> NetworkInput:
    """Seed 001: 8-bit brain window -> [0, 1], 3 channels, ImageNet mean / std."""
    x, field_of_view = _eight_bit_unit_rgb(slices, size)
    return NetworkInput(pp.imagenet_normalize(x), field_of_view)


def dense_unet_input(slices: np.ndarray, size: Sequence[int]) -> NetworkInput:
    """Seed 002: brain window -> [0, 1] at full HU precision (trained on phantoms, not on 8-bit images)."""
    hu, field_of_view = square(slices)
    return NetworkInput(pp.resize(pp.window(hu, *BRAIN_WINDOW), size)[:, None], field_of_view)


def vgg_wso_input(slices: np.ndarray, size: Sequence[int]) -> NetworkInput:
    """Seed 003: HU (8-bit brain window), since the network's window-setting layer windows them itself."""
    x, field_of_view = _eight_bit_slices(slices, size)
    return NetworkInput(x[:, None], field_of_view)


def resnet50_cls_input(slices: np.ndarray, size: Sequence[int]) -> NetworkInput:
    """Seed 004: 8-bit brain window -> [0, 1], grey repeated to 3 channels."""
    x, field_of_view = _eight_bit_unit_rgb(slices, size)
    return NetworkInput(x, field_of_view)
