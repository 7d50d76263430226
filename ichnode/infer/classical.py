"""Classical ICH segmentation: the baseline engine and the fallback when a model has no weights.

Steps, all on HU: smooth a little; find the skull; take the largest soft-tissue component that is
away from bone (the brain, cut off from the scalp by the skull); seed hemorrhage where the brain is
hyperdense; grow the seeds back into the hyperdense voxels up to the bone so extra-axial collections
(SDH, EDH) keep their full thickness; drop components smaller than a minimum volume.
It cannot tell subtypes apart, so its single class is "ICH".
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ichnode import __version__
from ichnode.config import ClassicalConfig
from ichnode.domain import Findings, ModelInfo, Volume


def _disk(radius_px: int) -> np.ndarray:
    r = max(1, radius_px)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy ** 2 + xx ** 2) <= r * r


def _per_slice(op, mask: np.ndarray, structure2d: np.ndarray) -> np.ndarray:
    """A 2D morphological operation applied to every slice (slice thickness varies too much for 3D)."""
    return op(mask, structure=structure2d[None, :, :])


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


class ClassicalEngine:
    def __init__(self, config: ClassicalConfig | None = None):
        self.config = config or ClassicalConfig()
        self.info = ModelInfo(name="ichnode-classical-hu", version=__version__)

    def analyse(self, volume: Volume) -> Findings:
        cfg = self.config
        dz, dy, dx = volume.spacing_mm
        sigma = cfg.smoothing_sigma_mm
        hu = ndimage.gaussian_filter(volume.hu, sigma=(sigma / dz, sigma / dy, sigma / dx))

        bone = volume.hu > cfg.bone_hu
        margin_px = int(round(cfg.bone_margin_mm / dy))
        near_bone = _per_slice(ndimage.binary_dilation, bone, _disk(margin_px))
        soft = (hu >= cfg.brain_hu_low) & (hu <= cfg.brain_hu_high + 10)
        # Erosion breaks thin soft-tissue bridges (foramina, partial volume) between scalp and brain.
        core = _per_slice(ndimage.binary_erosion, soft & ~near_bone, _disk(margin_px))
        brain = _largest_component(core)
        brain = _per_slice(ndimage.binary_dilation, brain, _disk(margin_px)) & soft & ~near_bone
        brain = _per_slice(ndimage.binary_fill_holes, brain, np.ones((3, 3), bool))

        hyperdense = (hu >= cfg.blood_hu_low) & (hu <= cfg.blood_hu_high) & ~bone
        seeds = hyperdense & brain
        # Grow seeds into hyperdense voxels within reach of the brain, up to the bone itself.
        reach = _per_slice(ndimage.binary_dilation, brain, _disk(2 * margin_px + 1))
        candidates, n = ndimage.label(hyperdense & reach, structure=np.ones((3, 3, 3), bool))
        seeded = np.unique(candidates[seeds])
        keep = np.zeros(n + 1, dtype=bool)
        keep[seeded[seeded > 0]] = True
        min_voxels = cfg.min_lesion_ml / volume.voxel_ml
        sizes = np.bincount(candidates.ravel(), minlength=n + 1)
        keep &= sizes >= min_voxels
        keep[0] = False
        lesions = keep[candidates]

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
