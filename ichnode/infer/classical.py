"""Classical ICH segmentation: the baseline engine and the fallback when a model has no weights.

Steps, all on HU:
1. The intracranial cavity, slice by slice: close the skull's small openings, fill the inside,
   keep its major 3D soft-tissue components (the brain; orbits, neck and scalp fall away).
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


def _major_components(mask: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Components at least `fraction` of the largest: the brain's compartments (the posterior
    fossa may connect to the rest only through a gap the erosion closed), not orbits or sinuses."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= fraction * sizes.max()
    keep[0] = False
    return keep[labels]


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
    brain = _major_components(core)
    brain = _per_slice(ndimage.binary_dilation, brain, 2.0 / px + cfg.bone_margin_mm / px) & inside
    brain = np.stack([ndimage.binary_fill_holes(s) for s in brain])
    if step > 1:
        brain = np.repeat(np.repeat(brain, step, axis=1), step, axis=2)
        brain = brain[:, :hu.shape[1], :hu.shape[2]]
        pad = ((0, 0), (0, hu.shape[1] - brain.shape[1]), (0, hu.shape[2] - brain.shape[2]))
        brain = np.pad(brain, pad)
    return brain


def smoothing_sigma_mm(hu: np.ndarray, cavity: np.ndarray, spacing_mm, cfg: ClassicalConfig) -> float:
    """Gaussian sigma (mm) that brings this series' noise down to cfg.target_noise_hu.

    Thin slices are noisier than thick ones; a fixed sigma either leaves speckle that chains into
    false lesions (0.625 mm) or blurs thin collections away (5 mm). Noise is estimated from
    differences of neighbouring voxels in the brain (robust to edges by the median).
    """
    inner = cavity[:, :, 1:] & cavity[:, :, :-1]
    if inner.sum() < 1000:
        return cfg.smoothing_sigma_mm
    diffs = (hu[:, :, 1:] - hu[:, :, :-1])[inner]
    noise = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / np.sqrt(2.0)
    # Isotropic Gaussian of sigma s (mm) on voxels dz*dy*dx divides white noise by
    # sqrt(8 pi^1.5 s^3 / (dz dy dx)).
    ratio = max(noise / cfg.target_noise_hu, 1.0)
    sigma = (ratio ** 2 * float(np.prod(spacing_mm)) / (8 * np.pi ** 1.5)) ** (1 / 3)
    return float(np.clip(sigma, cfg.smoothing_sigma_mm, cfg.max_smoothing_sigma_mm))


def _smooth_soft_tissue(hu: np.ndarray, sigma_vox, bone_hu: float) -> np.ndarray:
    """Gaussian smoothing that ignores bone and air (normalised convolution).

    Plain smoothing spreads 1000 HU of skull into the brain beside it, which then reads as blood;
    weighting by a soft-tissue mask keeps every smoothed value a mean of soft tissue only.
    """
    weight = ((hu > -100) & (hu < bone_hu)).astype(np.float32)
    num = ndimage.gaussian_filter(hu * weight, sigma_vox)
    den = ndimage.gaussian_filter(weight, sigma_vox)
    out = np.divide(num, den, out=np.full_like(num, -1000.0), where=den > 1e-3)
    out[weight == 0] = hu[weight == 0]
    return out


def _drop_small(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    components, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[components]


def _grow_to_local_midpoint(lesions: np.ndarray, hu: np.ndarray, allowed: np.ndarray,
                            ring_px: float, floor_hu: float) -> np.ndarray:
    """Move each lesion's edge to half-way between its own density and its surroundings'.

    A fixed 50 HU threshold cuts the edge of a clot at the wrong place when the neighbours are CSF
    (IVH, SAH) rather than brain: the edge voxel that is half blood, half CSF reads ~35 HU. The
    half-way threshold per lesion counts a voxel when it is at least half blood; it never goes
    below floor_hu, above which grey matter does not reach.
    """
    labels, _ = ndimage.label(lesions, structure=np.ones((3, 3, 3), bool))
    out = lesions.copy()
    pad = int(np.ceil(2 * ring_px))
    ring_structure = _disk(ring_px)[None, :, :]
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        box = tuple(slice(max(0, b.start - p), b.stop + p)
                    for b, p in zip(box, (0, pad, pad)))
        lesion = labels[box] == index
        inner = ndimage.binary_dilation(lesion, structure=ring_structure)
        # The edge voxels themselves are partly blood: the background is read one ring further.
        outer = ndimage.binary_dilation(inner, structure=ring_structure) & ~inner & allowed[box]
        outer &= ~lesions[box]
        candidates = inner & ~lesion & allowed[box]
        if not outer.any() or not candidates.any():
            continue
        local = hu[box]
        threshold = max(floor_hu, 0.5 * (np.median(local[lesion]) + np.median(local[outer])))
        out[box] |= candidates & (local >= threshold)
    return out


class ClassicalEngine:
    def __init__(self, config: ClassicalConfig | None = None):
        self.config = config or ClassicalConfig()
        self.info = ModelInfo(name="ichnode-classical-hu", version=__version__)

    def analyse(self, volume: Volume) -> Findings:
        cfg = self.config
        dz, dy, dx = volume.spacing_mm
        cavity = intracranial_mask(volume.hu, dy, cfg)
        sigma = smoothing_sigma_mm(volume.hu, cavity, volume.spacing_mm, cfg)
        hu = _smooth_soft_tissue(volume.hu, (sigma / dz, sigma / dy, sigma / dx), cfg.bone_hu)
        blood = (hu >= cfg.blood_hu_low) & (hu <= cfg.blood_hu_high) & cavity
        # Voxels next to bone are partly bone (partial volume) and look like blood: they may only
        # extend a collection that is already there (SDH, EDH), never start one.
        rim = _per_slice(ndimage.binary_dilation, volume.hu > cfg.bone_hu, cfg.bone_rim_mm / dy)
        hyperdense = blood & ~rim
        if cfg.opening_radius_mm > 0:
            hyperdense = _per_slice(ndimage.binary_opening, hyperdense, cfg.opening_radius_mm / dy)
        lesions = _drop_small(hyperdense, cfg.min_lesion_ml / volume.voxel_ml)
        # Grow collections into the rim up to the bone: voxels that mix blood and bone read
        # above the blood band but belong to the collection (its volume counts them).
        rim_blood = rim & (hu >= cfg.blood_hu_low) & (volume.hu <= cfg.bone_hu)
        lesions |= _per_slice(ndimage.binary_dilation, lesions, cfg.bone_rim_mm / dy) & (blood | rim_blood)
        for _ in range(cfg.edge_steps):
            lesions = _grow_to_local_midpoint(lesions, hu, cavity & (volume.hu <= cfg.bone_hu),
                                              cfg.edge_ring_mm / dy, cfg.edge_min_hu)

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
