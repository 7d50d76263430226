"""BLAST-CT's network and its inference arithmetic, re-implemented from ``blast-ct`` 2.1.0 (Apache-2.0).

Monteiro et al., Lancet Digital Health 2020; https://github.com/biomedia-mira/blast-ct. The package's
``data/config.json`` builds ``DeepMedic(input_channels=1, num_classes=5, feature_maps=(30, 30, 40, 40,
40, 40, 50, 50), fully_connected=(250, 250))`` with three pathways at scale 5, 3 and 1. This module
keeps the package's module names, so its state dicts (``model_N.pt``) load with ``strict=True``.

What the package's inference does (``blast_ct/console_tool.py`` -> ``read_config.get_test_loader``,
``nifti/datasets.py``, ``nifti/rescale.py``, ``nifti/transformation.py``, ``nifti/savers.py``,
``trainer/inference.py``) and how it is reproduced here:

1. Resample to 1 mm with SimpleITK linear interpolation on a grid with the same origin and direction,
   ``round((n - 1) * spacing + 1)`` points per axis; points outside the input (continuous index
   outside [-0.5, n - 0.5)) get the image minimum. :func:`resample_to_1mm` does the same separably
   (ITK's trilinear interpolation is x, then y, then z lerps in double: the same order here).
2. Clip to [-15, 100] HU and map to [-1, 1]: :func:`normalise` (same float32 expression order).
3. Tile the 1 mm grid with output patches of 30^3 (input 110^3, edge padding beyond the image), with
   ``size // 30 + 1`` tiles per axis. The network is convolutional and each pathway's subsampling grid
   is anchored at multiples of its scale, so a patch whose output is a block of whole 30^3 tiles gives
   the same numbers as the tiles one by one (:meth:`DeepMedic.forward` takes any multiple of 30);
   :func:`predict_labels` runs larger blocks, which saves the overlap work of 110^3 inputs.
4. One member: label = argmax of the logits. Ensemble: sum of the members' softmax in member order,
   then argmax (``ModelInferenceEnsemble``). Same here.
5. Labels go back to the input grid by nearest neighbour (SimpleITK ``Resample``, nearest, default 0):
   :func:`labels_to_grid`.

A tile whose whole 110^3 input is at the lower clip value (air) is a constant input, for which the
network's output is the same constant everywhere: such tiles get that constant answer without running
the network (exact, it does not change the labels).
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SCALES = ((5, 5, 5), (3, 3, 3), (1, 1, 1))
FEATURE_MAPS = (30, 30, 40, 40, 40, 40, 50, 50)
FULLY_CONNECTED = (250, 250)
NUM_CLASSES = 5  # 0 background, 1 IPH, 2 extra-axial, 3 perilesional oedema, 4 IVH
WINDOW_HU = (-15.0, 100.0)
TILE = 30  # output patch of the package (input 110)
MARGIN = 40  # input context on each side of an output block
BLOCK = 10  # granularity of the air test (110 = 11 x 10, tiles step 3 x 10)


def crop_center(x: torch.Tensor, size) -> torch.Tensor:
    """The package's ``crop_center`` (models/base.py)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    crop = (slice(None), slice(None)) + tuple(
        slice(c // 2 - s // 2, c // 2 + s // 2 + s % 2) for c, s in zip(x.shape[2:], size))
    return x[crop]


class PreActBlock(nn.Module):
    """BatchNorm -> PReLU -> Conv (no bias), plus the centre-cropped input when channels match."""

    def __init__(self, in_planes: int, planes: int, kernel_size: int = 3):
        super().__init__()
        self.bn = nn.BatchNorm3d(in_planes)
        self.conv = nn.Conv3d(in_planes, planes, kernel_size=kernel_size, bias=False)
        self.prelu = nn.PReLU()
        self.trim = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.prelu(self.bn(x)))  # dropout of the package: identity in eval
        if x.shape[1] == out.shape[1]:
            t = self.trim
            out += x[:, :, t:x.shape[2] - t, t:x.shape[3] - t, t:x.shape[4] - t] if t else x
        return out


class _Resample(nn.Module):
    """Placeholder at the package's Sequential positions 0 (DownSample) and 9 (UpSample): no weights."""


class Path(nn.Module):
    def __init__(self, scale: tuple[int, int, int], input_channels: int, feature_maps):
        super().__init__()
        self.scale = tuple(scale)
        blocks = [PreActBlock(feature_maps[i - 1] if i else input_channels, fm)
                  for i, fm in enumerate(feature_maps)]
        self.path = nn.Sequential(_Resample(), *blocks, _Resample())
        self.blocks = blocks
        self.trim = len(blocks)  # each 3^3 valid convolution takes one voxel off each side

    def input_size(self, output_size) -> tuple[int, ...]:
        return tuple((o // s + bool(o % s) + 2 * self.trim) * s for o, s in zip(output_size, self.scale))

    def forward(self, x: torch.Tensor, output_size) -> torch.Tensor:
        out = crop_center(x, self.input_size(output_size))
        out = out[(slice(None), slice(None)) + tuple(slice(s // 2, None, s) for s in self.scale)]
        for block in self.blocks:
            out = block(out)
        if any(s > 1 for s in self.scale):
            out = F.interpolate(out, scale_factor=self.scale, mode="nearest")
        return crop_center(out, output_size)


class DeepMedic(nn.Module):
    """blast_ct.models.deepmedic.DeepMedic with the package's defaults and config; state-dict compatible."""

    def __init__(self, input_channels: int = 1, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.paths: list[Path] = []
        for i, scale in enumerate(SCALES):
            path = Path(scale, input_channels, FEATURE_MAPS)
            self.paths.append(path)
            self.add_module("path" + str(scale) + str(i), path)
        channels = (FEATURE_MAPS[-1] * len(SCALES),) + FULLY_CONNECTED + (num_classes,)
        self.fully_connected = nn.Sequential(
            *(PreActBlock(channels[i], channels[i + 1], kernel_size=1) for i in range(len(channels) - 1)))

    @staticmethod
    def output_size(input_size) -> tuple[int, ...]:
        """Output of an input of output + 2 * MARGIN (the package's 110 -> 30)."""
        return tuple(i - 2 * MARGIN for i in input_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = self.output_size(image.shape[2:])
        if any(s <= 0 or s % TILE for s in size):
            raise ValueError(f"output size {size} must be whole {TILE}-voxel tiles (input = output + 80)")
        out = torch.cat([path(image, size) for path in self.paths], dim=1)
        return self.fully_connected(out)


def load_member(path, device: torch.device | str = "cpu") -> DeepMedic:
    """One ensemble member from a state dict file (``model_N.pt``), loaded strictly, in eval mode."""
    model = DeepMedic()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


# ------------------------------------------------------------------------------------- resampling
def grid_size_1mm(n: int, spacing: float) -> int:
    """``rescale.get_size_from_spacing`` for 1 mm: points of the 1 mm grid along an axis."""
    return int(round((n - 1) * spacing / 1.0 + 1))


def _lerp_axis(a: np.ndarray, axis: int, spacing: float, n_out: int):
    """Linear interpolation along one axis at 1 mm steps from the first voxel (ITK semantics)."""
    n = a.shape[axis]
    c = np.arange(n_out, dtype=np.float64) * 1.0 / spacing
    inside = (c >= -0.5) & (c < n - 0.5)
    base = np.clip(np.floor(c).astype(np.int64), 0, n - 1)
    frac = c - base
    nxt = np.minimum(base + 1, n - 1)
    frac[(nxt == base) | (frac < 0)] = 0.0
    lo = np.take(a, base, axis=axis)
    hi = np.take(a, nxt, axis=axis)
    shape = [1] * a.ndim
    shape[axis] = n_out
    return lo + (hi - lo) * frac.reshape(shape), inside


def resample_to_1mm(hu: np.ndarray, spacing_mm) -> np.ndarray:
    """(z, y, x) float32 at ``spacing_mm`` (dz, dy, dx) -> float32 on the 1 mm grid of the same origin."""
    out_shape = tuple(grid_size_1mm(n, s) for n, s in zip(hu.shape, spacing_mm))
    default = float(hu.min())
    dz, dy, dx = spacing_mm
    planes = np.empty((hu.shape[0], out_shape[1], out_shape[2]), dtype=np.float64)
    for z0 in range(0, hu.shape[0], 16):  # x then y per slab, in double (bounded memory)
        slab = hu[z0:z0 + 16].astype(np.float64)
        slab, in_x = _lerp_axis(slab, 2, dx, out_shape[2])
        planes[z0:z0 + 16], in_y = _lerp_axis(slab, 1, dy, out_shape[1])
    out, in_z = _lerp_axis(planes, 0, dz, out_shape[0])
    out = out.astype(np.float32)
    outside = ~(in_z[:, None, None] & in_y[None, :, None] & in_x[None, None, :])
    out[outside] = default
    return out


def normalise(image: np.ndarray) -> np.ndarray:
    """``IntensityWindowNormalization(-15, 100)``: clip, then map to [-1, 1] (float32)."""
    lower, upper = WINDOW_HU
    image = image.astype(np.float32, copy=True)
    image[image <= lower] = lower
    image[image >= upper] = upper
    return (2. * image - lower - upper) / (upper - lower)


def labels_to_grid(labels_1mm: np.ndarray, shape, spacing_mm) -> np.ndarray:
    """Nearest-neighbour resampling of 1 mm labels onto the original (z, y, x) grid (default 0)."""
    index = []
    for axis, (n, s) in enumerate(zip(shape, spacing_mm)):
        c = np.arange(n, dtype=np.float64) * s
        m = labels_1mm.shape[axis]
        near = np.floor(c + 0.5).astype(np.int64)
        inside = (c >= -0.5) & (c < m - 0.5)
        index.append((np.clip(near, 0, m - 1), inside))
    (iz, mz), (iy, my), (ix, mx) = index
    out = labels_1mm[np.ix_(iz, iy, ix)]
    out[~(mz[:, None, None] & my[None, :, None] & mx[None, None, :])] = 0
    return out


# -------------------------------------------------------------------------------------- inference
def active_tiles(padded: np.ndarray, tiles) -> np.ndarray:
    """bool (tz, ty, tx): the tile's 110^3 input has a voxel above the lower clip value (not all air)."""
    b = [s // BLOCK for s in padded.shape]
    blocks = padded.reshape(b[0], BLOCK, b[1], BLOCK, b[2], BLOCK).max(axis=(1, 3, 5)) > -1.0
    span = (TILE + 2 * MARGIN) // BLOCK
    step = TILE // BLOCK
    out = np.zeros(tiles, dtype=bool)
    for i, j, k in itertools.product(*(range(t) for t in tiles)):
        out[i, j, k] = blocks[i * step:i * step + span, j * step:j * step + span,
                              k * step:k * step + span].any()
    return out


def _combine(outputs: list[torch.Tensor]) -> torch.Tensor:
    """Labels from the members' logits (N, C, ...): the package's single-member / ensemble rule."""
    if len(outputs) == 1:
        return torch.max(outputs[0], dim=1)[1]
    prob_sum = None
    for logits in outputs:
        probs = F.softmax(logits, dim=1)
        prob_sum = probs if prob_sum is None else prob_sum + probs
    return torch.argmax(prob_sum, dim=1)


def constant_label(members, device) -> int:
    """The label of every voxel of an all-air (constant -1) input."""
    x = torch.full((1, 1) + (TILE + 2 * MARGIN,) * 3, -1.0, device=device)
    with torch.inference_mode():
        return int(_combine([m(x)[..., :1, :1, :1] for m in members]).flatten()[0])


def predict_labels(norm: np.ndarray, members, device, chunk_tiles=(2, 3, 3),
                   air_label: int | None = None) -> np.ndarray:
    """uint8 labels on the 1 mm grid of the normalised image ``norm`` (z, y, x)."""
    shape = norm.shape
    tiles = tuple(s // TILE + 1 for s in shape)
    padded_out = tuple(t * TILE for t in tiles)
    padded = np.pad(norm, [(MARGIN, p - s + MARGIN) for s, p in zip(shape, padded_out)], mode="edge")
    active = active_tiles(padded, tiles)
    if air_label is None and not active.all():
        air_label = constant_label(members, device)
    labels = np.full(padded_out, air_label or 0, dtype=np.uint8)
    if active.any():
        lo = [int(np.flatnonzero(active.any(axis=tuple(a for a in range(3) if a != d))).min()) for d in range(3)]
        hi = [int(np.flatnonzero(active.any(axis=tuple(a for a in range(3) if a != d))).max()) + 1
              for d in range(3)]
        starts = [range(lo[d], hi[d], chunk_tiles[d]) for d in range(3)]
        with torch.inference_mode():
            for start in itertools.product(*starts):
                stop = [min(s + c, h) for s, c, h in zip(start, chunk_tiles, hi)]
                if not active[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]].any():
                    continue
                out_sl = tuple(slice(a * TILE, b * TILE) for a, b in zip(start, stop))
                in_sl = tuple(slice(a * TILE, b * TILE + 2 * MARGIN) for a, b in zip(start, stop))
                x = torch.from_numpy(np.ascontiguousarray(padded[in_sl]))[None, None].to(device)
                pred = _combine([m(x) for m in members])
                labels[out_sl] = pred[0].to("cpu").numpy().astype(np.uint8)
    return labels[tuple(slice(0, s) for s in shape)]


def chunk_for(device: torch.device) -> tuple[int, int, int]:
    """Tiles per forward pass: bounded memory on the CPU (~1.5 GB peak), larger blocks on a GPU."""
    return (4, 8, 8) if device.type == "cuda" else (2, 3, 3)


__all__ = ["DeepMedic", "load_member", "resample_to_1mm", "normalise", "labels_to_grid",
           "predict_labels", "constant_label", "chunk_for", "grid_size_1mm", "NUM_CLASSES"]
