"""Classical ICH segmentation: the baseline engine and the fallback when a model has no weights.

Steps, all on HU:
1. The intracranial cavity, slice by slice: close the skull's small openings, fill the inside,
   take the largest 3D soft-tissue component of it (the brain; orbits, neck and scalp fall away).
   This runs at about 1 mm in-plane resolution because it only has to be right to a millimetre.
2. Hyperdense voxels (fresh blood, 50-90 HU after light smoothing) inside the cavity.
3. A small in-plane opening removes structures thinner than about 2 mm: the partial-volume rim
   along the inner table of the skull, the falx, small vessels. Collections thicker than that
   (SDH, EDH, IPH, IVH) keep their shape.
4. Components smaller than a minimum volume are dropped.
It cannot tell subtypes apart, so its single class is "ICH".
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ichnode import __version__
from ichnode.config import ClassicalConfig
from ichnode.domain import Findings, ModelInfo, Volume

WORKING_PIXEL_MM = 1.0  # in-plane resolution used for the cavity mask


def _disk(radius_px: float) -> np.ndarray:
    r = max(1, int(np.ceil(radius_px)))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy ** 2 + xx ** 2) <= radius_px ** 2 + 0.5


def _per_slice(op, mask: np.ndarray, radius_px: float) -> np.ndarray:
    """A 2D morphological operation on every slice (slice thickness varies too much for 3D)."""
    return op(mask, structure=_disk(radius_px)[None, :, :])


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def intracranial_mask(hu: np.ndarray, pixel_mm: float, cfg: ClassicalConfig) -> np.ndarray:
    """Soft tissue enclosed by the skull, at working resolution, upsampled back to hu's grid."""
    step = max(1, int(WORKING_PIXEL_MM // pixel_mm))
    small = hu[:, ::step, ::step]
    px = pixel_mm * step
    bone = small > cfg.bone_hu
    # Closing bridges sutures, foramina and beam-hardening breaks in the skull ring.
    closed = _per_slice(ndimage.binary_closing, bone, 4.0 / px)
    inside = np.stack([ndimage.binary_fill_holes(s) for s in closed]) & ~closed
    soft = (small >= cfg.brain_hu_low) & (small <= cfg.brain_hu_high + 10)
    away_from_bone = ~_per_slice(ndimage.binary_dilation, bone, cfg.bone_margin_mm / px)
    # Erosion cuts thin bridges (optic canals, partial volume) before picking the brain.
    core = _per_slice(ndimage.binary_erosion, inside & soft & away_from_bone, 2.0 / px)
    brain = _largest_component(core)
    brain = _per_slice(ndimage.binary_dilation, brain, 2.0 / px + cfg.bone_margin_mm / px) & inside
    brain = np.stack([ndimage.binary_fill_holes(s) for s in brain])
    if step > 1:
        brain = np.repeat(np.repeat(brain, step, axis=1), step, axis=2)
        brain = brain[:, :hu.shape[1], :hu.shape[2]]
        pad = ((0, 0), (0, hu.shape[1] - brain.shape[1]), (0, hu.shape[2] - brain.shape[2]))
        brain = np.pad(brain, pad)
    return brain


class ClassicalEngine:
    def __init__(self, config: ClassicalConfig | None = None):
        self.config = config or ClassicalConfig()
        self.info = ModelInfo(name="ichnode-classical-hu", version=__version__)

    def analyse(self, volume: Volume) -> Findings:
        cfg = self.config
        dz, dy, dx = volume.spacing_mm
        sigma = cfg.smoothing_sigma_mm
        hu = ndimage.gaussian_filter(volume.hu, sigma=(sigma / dz, sigma / dy, sigma / dx))
        cavity = intracranial_mask(volume.hu, dy, cfg)
        hyperdense = (hu >= cfg.blood_hu_low) & (hu <= cfg.blood_hu_high) & cavity
        hyperdense = _per_slice(ndimage.binary_opening, hyperdense, cfg.opening_radius_mm / dy)
        components, n = ndimage.label(hyperdense, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(components.ravel(), minlength=n + 1)
        keep = sizes >= cfg.min_lesion_ml / volume.voxel_ml
        keep[0] = False
        lesions = keep[components]

        heatmap = None
        if lesions.any():
            blurred = ndimage.gaussian_filter(lesions.astype(np.float32),
                                              sigma=(2.0 / dz, 4.0 / dy, 4.0 / dx))
            heatmap = blurred / blurred.max()
        return Findings(
            model=self.info,
            labels=lesions.astype(np.uint8),
            segment_classes=("ICH",),
            heatmap=heatmap,
        )
