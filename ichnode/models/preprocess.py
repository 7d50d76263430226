"""Steps of the networks' input preprocessing, as the source papers describe them.

Building blocks (numpy in, float32 numpy out; arrays are (z, y, x) or (y, x) like ``ichnode.domain``):

* :func:`window` / :func:`window_center_width`: clip Hounsfield units to a window and map it to [0, 1].
* :func:`blank_border_bbox` / :func:`crop_blank_border`: cut away the blank (air) border around the head
  (seed 000: "after cutting out the blank part of the brain in the image").
* :func:`remove_fixation_device`: seed 001's morphological treatment - binarise, erode with a disk, zero
  the edge columns, flood fill, and superimpose the resulting head mask on the image.
* :func:`resize`, :func:`center_crop`, :func:`to_three_channels`, :func:`imagenet_normalize`.

The per-network pipelines that combine these steps are in :mod:`ichnode.models.inputs`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------- windows
def window(hu: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip ``hu`` to [low, high] and map linearly to [0, 1] (float32)."""
    if not high > low:
        raise ValueError(f"window high ({high}) must exceed low ({low})")
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def window_center_width(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """Window given as level (center) and width, as on a viewer."""
    return window(hu, center - width / 2.0, center + width / 2.0)


# ------------------------------------------------------------------------------------- blank border
def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def blank_border_bbox(
    image: np.ndarray,
    threshold: float = 0.0,
    axes: Sequence[int] | None = None,
    margin: int = 0,
    largest_component: bool = False,
) -> tuple[slice, ...]:
    """Bounding box of the non-blank content (``image > threshold``) as one slice per axis.

    Only ``axes`` (default: all) are cropped; the others get ``slice(None)``. ``largest_component`` keeps
    only the largest connected foreground component (drops specks of noise, e.g. part of the table).
    An entirely blank image yields the full extent.
    """
    image = np.asarray(image)
    axes = tuple(range(image.ndim)) if axes is None else tuple(a % image.ndim for a in axes)
    mask = image > threshold
    if largest_component:
        mask = _largest_component(mask)
    bbox: list[slice] = [slice(None)] * image.ndim
    if not mask.any():
        return tuple(bbox)
    for ax in axes:
        other = tuple(a for a in range(image.ndim) if a != ax)
        present = np.flatnonzero(mask.any(axis=other))
        lo = max(int(present[0]) - margin, 0)
        hi = min(int(present[-1]) + 1 + margin, image.shape[ax])
        bbox[ax] = slice(lo, hi)
    return tuple(bbox)


def crop_blank_border(
    image: np.ndarray,
    threshold: float = 0.0,
    axes: Sequence[int] | None = None,
    margin: int = 0,
    largest_component: bool = False,
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Crop the blank border; returns (cropped view, bbox) - bbox maps results back to the original."""
    bbox = blank_border_bbox(image, threshold, axes, margin, largest_component)
    return np.asarray(image)[bbox], bbox


# ------------------------------------------------------------------------------- fixation device
def disk(radius: int) -> np.ndarray:
    """Disk-shaped structuring element (bool, (2r+1, 2r+1))."""
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= r * r


def head_mask(
    image: np.ndarray,
    threshold: float = -300.0,
    erosion_radius: int = 5,
    edge_columns: int = 2,
) -> np.ndarray:
    """Mask of the head on one axial slice, without the fixation device (seed 001, section 2.2.1).

    Steps of the paper: binarise (``image > threshold``); erode with a disk so that the thin contacts
    between head and head holder / straps break; zero the edge columns; flood fill. The flood fill
    starts inside the head: the component kept is the largest one after erosion (the paper does not say
    which seed it fills from; the largest component is where a seed inside the head lands). The kept
    component is dilated back with the same disk (within the original binary) so the skin outline is
    restored, and its holes are filled so dark structures inside the skull stay in the mask.
    """
    if image.ndim != 2:
        raise ValueError(f"head_mask expects one 2D slice, got shape {image.shape}")
    binary = np.asarray(image) > threshold
    if not binary.any():
        return binary
    selem = disk(erosion_radius) if erosion_radius > 0 else np.ones((1, 1), bool)
    core = ndimage.binary_erosion(binary, structure=selem) if erosion_radius > 0 else binary.copy()
    if edge_columns > 0:
        core[:, :edge_columns] = False
        core[:, -edge_columns:] = False
    if not core.any():  # everything eroded away: fall back to the un-eroded foreground
        core = binary
    core = _largest_component(core)
    if erosion_radius > 0:
        core = ndimage.binary_dilation(core, structure=selem) & binary
    return ndimage.binary_fill_holes(core)


def remove_fixation_device(
    image: np.ndarray,
    threshold: float = -300.0,
    erosion_radius: int = 5,
    edge_columns: int = 2,
    background: float | None = None,
) -> np.ndarray:
    """Set everything outside :func:`head_mask` to ``background`` (default: the image minimum)."""
    image = np.asarray(image, dtype=np.float32)
    mask = head_mask(image, threshold, erosion_radius, edge_columns)
    fill = np.float32(image.min() if background is None else background)
    return np.where(mask, image, fill).astype(np.float32)


# ------------------------------------------------------------------------------ resizing, channels
def resize(array: np.ndarray, shape: Sequence[int], mode: str = "linear") -> np.ndarray:
    """Resize the trailing ``len(shape)`` axes (2 or 3) with (bi/tri)linear or nearest interpolation.

    Leading axes (e.g. channels) are kept. Bilinear downsampling uses anti-aliasing.
    """
    array = np.asarray(array, dtype=np.float32)
    nd = len(shape)
    if nd not in (2, 3) or array.ndim < nd:
        raise ValueError(f"cannot resize array of shape {array.shape} to {tuple(shape)}")
    if tuple(array.shape[-nd:]) == tuple(shape):
        return array.copy()
    lead = array.shape[:-nd]
    t = torch.from_numpy(np.ascontiguousarray(array)).reshape(1, -1, *array.shape[-nd:])
    if mode == "nearest":
        out = F.interpolate(t, size=tuple(shape), mode="nearest")
    elif mode == "linear":
        interp = "bilinear" if nd == 2 else "trilinear"
        kw = {"antialias": True} if nd == 2 else {}
        out = F.interpolate(t, size=tuple(shape), mode=interp, align_corners=False, **kw)
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    return out.reshape(*lead, *shape).numpy().astype(np.float32, copy=False)


def center_crop(array: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Central crop of the trailing axes (zero-padded first where the array is smaller)."""
    array = np.asarray(array)
    nd = len(size)
    pad = [(0, 0)] * (array.ndim - nd)
    for have, want in zip(array.shape[-nd:], size):
        extra = max(want - have, 0)
        pad.append((extra // 2, extra - extra // 2))
    array = np.pad(array, pad) if any(p != (0, 0) for p in pad) else array
    index = [slice(None)] * (array.ndim - nd)
    for have, want in zip(array.shape[-nd:], size):
        start = (have - want) // 2
        index.append(slice(start, start + want))
    return array[tuple(index)]


def to_three_channels(image: np.ndarray) -> np.ndarray:
    """(H, W) or (1, H, W) -> (3, H, W) by repetition (grey CT as an RGB image)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    if image.shape[0] == 3:
        return image
    if image.shape[0] != 1:
        raise ValueError(f"expected 1 or 3 channels, got shape {image.shape}")
    return np.repeat(image, 3, axis=0)


def imagenet_normalize(image: np.ndarray) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (x - mean) / std with the ImageNet statistics (seed 001)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim < 3 or image.shape[-3] != 3:
        raise ValueError(f"expected (..., 3, H, W), got {image.shape}")
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1)
    return (image - mean) / std
