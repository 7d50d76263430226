"""Classical ICH segmentation: the baseline engine and the fallback when a model has no weights.

Steps, all on HU:
1. The intracranial cavity, slice by slice: close the skull's small openings, fill the inside
   (the skull's convex hull where the ring stays open; a slice whose outline failed takes its
   neighbours'), keep its major 3D soft-tissue components, by share or by size (the brain with its
   posterior fossa; orbits, neck and scalp fall away).
   This runs at about 1 mm in-plane resolution because it only has to be right to a millimetre.
2. Hyperdense voxels (fresh blood, 50-90 HU after noise-adapted smoothing that leaves out voxels
   above 120 HU) inside the cavity, away from the partial-volume rim along bone (and from bone on
   the next thick slice) and from the midline band (falx, sagittal and straight sinuses).
3. Components smaller than a minimum volume, or whose median density is that of unclotted sinus
   blood (under 55 HU, 53 on thick slices), are dropped; on thin slices only each component's
   dense core (1 mm local mean at clot density) is kept: what is left are the lesions' seeds.
4. Collections grow into the bone rim (voxels mixing blood and bone), then each lesion's edge
   moves, over a few rings and to the slices above and below, to half-way between its density
   and its surroundings'.
5. Each lesion's mask is resized to its blood content (partial volume): around it, every voxel's
   blood fraction is read against the lesion's core density and the local background; the mask
   becomes the N voxels of highest fraction, N the sum of the fractions. Thin collections (SAH,
   a thick slice's first and last slice) whose voxels are only partly blood are counted for the
   blood they hold, and the label mask stays binary: its voxel count is the reported volume.
It cannot tell subtypes apart, so its single class is "ICH".
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ichnode import __version__
from ichnode.config import ClassicalConfig
from ichnode.domain import Findings, ModelInfo, Volume
from ichnode.infer.skull import (bridge_slices, disk, major_components, midline_band, near_bone,
                                 normalised_gaussian, per_slice, skull_interior, skull_only,
                                 working_step)

WORKING_PIXEL_MM = 1.0  # in-plane resolution used for the cavity mask
CORE_MIN_VOXELS = 20  # fewer core voxels than this do not give a stable median
# A thick slice averages a collection with what lies above and below it: inserted IVH on 5 mm slabs
# of the real series seeds at a median of 53.8-55.2 HU, the same blood at 0.625 mm well above 55.
THICK_SLICE_MM = 3.0
THICK_SLICE_DILUTION_HU = 2.0
CORE_SCALE_MM = 1.0  # a seed is where the density averaged over this scale is a clot's
BRAIN_COMPARTMENT_ML = 20.0  # a soft-tissue compartment this large inside the skull is brain
# A slice whose skull outline is open (foramen magnum, skull-base canals) takes the cavity of the
# slices within this distance above and below: on the real series, 4 mm of posterior fossa had none.
BRIDGE_MM = 3.0
_CROSS = ndimage.generate_binary_structure(2, 1)[None]
_SQUARE = np.ones((1, 3, 3), bool)


def intracranial_mask(hu: np.ndarray, spacing_mm, cfg: ClassicalConfig) -> np.ndarray:
    """Soft tissue enclosed by the skull, at working resolution, upsampled back to hu's grid."""
    slice_mm, pixel_mm = spacing_mm[0], spacing_mm[1]
    step = working_step(pixel_mm, WORKING_PIXEL_MM)
    small = hu[:, ::step, ::step]
    px = pixel_mm * step
    bone = small > cfg.bone_hu
    inside = bridge_slices(skull_interior(skull_only(bone), px), int(BRIDGE_MM / slice_mm))
    soft = (small >= cfg.brain_hu_low) & (small <= cfg.brain_hu_high + 10)
    away_from_bone = ~per_slice(ndimage.binary_dilation, bone, cfg.bone_margin_mm / px)
    # Erosion cuts thin bridges (optic canals, partial volume) before picking the brain.
    core = per_slice(ndimage.binary_erosion, inside & soft & away_from_bone, 2.0 / px)
    # The brain's compartments (the posterior fossa may join the rest only through a gap the
    # erosion closed), not orbits or sinuses. On the real series the lower posterior fossa is
    # 34 mL of eroded core, 3% of the rest: kept by its absolute size.
    voxel_ml = slice_mm * px * px / 1000.0
    brain = major_components(core, 0.05, min_voxels=BRAIN_COMPARTMENT_ML / voxel_ml)
    brain = per_slice(ndimage.binary_dilation, brain, 2.0 / px + cfg.bone_margin_mm / px) & inside
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


def _smooth_soft_tissue(hu: np.ndarray, sigma_vox, max_hu: float) -> np.ndarray:
    """Gaussian smoothing that ignores bone and air (normalised convolution).

    Plain smoothing spreads 1000 HU of skull into the brain beside it, which then reads as blood;
    weighting by a soft-tissue mask keeps every smoothed value a mean of soft tissue only.
    """
    weight = ((hu > -100) & (hu < max_hu)).astype(np.float32)
    out = normalised_gaussian(hu, weight, sigma_vox, fill=-1000.0)
    out[weight == 0] = hu[weight == 0]
    return out


def _dense_enough(mask: np.ndarray, hu: np.ndarray, min_median_hu: float) -> np.ndarray:
    """The components of mask whose median density reaches min_median_hu. Acute blood reads 55 to
    90 HU; the dural sinuses and cortical veins of a non-contrast scan (unclotted blood, 40 to 55 HU)
    and grey matter lifted by beam hardening only graze the lower end of the blood band."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return mask
    medians = ndimage.median(hu, labels, np.arange(1, n + 1))
    keep = np.concatenate([[False], np.asarray(medians) >= min_median_hu])
    return keep[labels]


def _dense_cores(mask: np.ndarray, hu: np.ndarray, seed_hu: float, max_hu: float,
                 spacing_mm) -> np.ndarray:
    """The part of each component whose local mean density (over CORE_SCALE_MM) reaches seed_hu.

    A lesion against a sinus or the tentorium shares one component with it, and the lesion's
    density carries the component's median past the sinus rule: the whole component then grew
    into the sinus (2-6 mL outside thin-slice lesions at the skull base). Averaged over a few
    millimetres, a clot keeps its density while a sinus of unclotted blood stays under seed_hu;
    a per-voxel threshold instead would keep only a clot's noise peaks and bias its density high.
    The edge growth that follows adds the lesion's rim back. Thin slices only: on 5 mm slabs
    the sinus problem was not measured (median 0.9 mL outside lesions), and a 5 mL SDH, thinned
    by the slab's partial volume, had no such core (missed on 2 of 2 confirm cases).
    """
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    out = np.zeros_like(mask)
    sigma = [CORE_SCALE_MM / d for d in spacing_mm]
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        box = _widen(box, mask.shape, 3 * CORE_SCALE_MM, spacing_mm)
        local = hu[box]
        soft = ((local > -100) & (local < max_hu)).astype(np.float32)
        mean = normalised_gaussian(local, soft, sigma, fill=-1000.0)
        out[box] |= (labels[box] == index) & (mean >= seed_hu)
    return out


def _drop_small(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    components, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[components]


def _grow_to_local_midpoint(lesions: np.ndarray, hu: np.ndarray, allowed: np.ndarray,
                            ring_px: float, floor_hu: float, steps: int) -> np.ndarray:
    """Move each lesion's edge to half-way between its own density and its surroundings'.

    A fixed 50 HU threshold cuts the edge of a clot at the wrong place when the neighbours are CSF
    (IVH, SAH) rather than brain: the edge voxel that is half blood, half CSF reads ~35 HU. The
    half-way threshold per lesion counts a voxel when it is at least half blood; it never goes
    below floor_hu, above which grey matter does not reach. The edge moves up to `steps` rings,
    also to the slices above and below (thick slices dilute a collection's first and last slice).
    """
    labels, _ = ndimage.label(lesions, structure=np.ones((3, 3, 3), bool))
    out = lesions.copy()
    pad = int(np.ceil((steps + 1) * ring_px))
    ring = disk(ring_px)[None, :, :]
    grow = np.zeros((3,) + ring.shape[1:], bool)
    grow[1] = ring[0]
    grow[(0, 2), ring.shape[1] // 2, ring.shape[2] // 2] = True
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        box = tuple(slice(max(0, b.start - p), b.stop + p)
                    for b, p in zip(box, (steps, pad, pad)))
        lesion = labels[box] == index
        inner = ndimage.binary_dilation(lesion, structure=ring)
        # The edge voxels themselves are partly blood: the background is read one ring further.
        outer = ndimage.binary_dilation(inner, structure=ring) & ~inner & allowed[box]
        outer &= ~lesions[box]
        if not outer.any():
            continue
        local = hu[box]
        threshold = max(floor_hu, 0.5 * (np.median(local[lesion]) + np.median(local[outer])))
        candidates = allowed[box] & (local >= threshold)
        grown = ndimage.binary_dilation(lesion, structure=grow, iterations=steps, mask=candidates | lesion)
        out[box] |= grown
    return out


def _grow_mm(mask: np.ndarray, reach_mm: float, spacing_mm) -> np.ndarray:
    """Dilation by a ball of reach_mm, built as a stack of in-plane octagons (each from iterated
    cross and square steps): on thin slices the ball itself spans thousands of voxels, and one
    dilation by it cost more than the rest of the engine."""
    dz, dy = spacing_mm[0], spacing_mm[1]
    out = np.zeros_like(mask)
    for k in range(int(reach_mm // dz) + 1):
        steps = int(round(np.sqrt(reach_mm ** 2 - (k * dz) ** 2) / dy))
        layer = mask
        for structure, n in ((_CROSS, (steps + 1) // 2), (_SQUARE, steps // 2)):
            if n:
                layer = ndimage.binary_dilation(layer, structure=structure, iterations=n)
        out |= layer
        if k:
            out[k:] |= layer[:-k]
            out[:-k] |= layer[k:]
    return out


def _local_background(hu: np.ndarray, tissue: np.ndarray, sigma_vox) -> np.ndarray:
    """Mean HU of the tissue around each voxel (normalised convolution over `tissue`)."""
    # Deep inside a large lesion no tissue is near: the tissue's overall median stands in.
    fallback = float(np.median(hu[tissue])) if tissue.any() else np.nan
    return normalised_gaussian(hu, tissue.astype(np.float32), sigma_vox, fill=fallback)


def _blood_fraction(hu: np.ndarray, blood_hu: float, background: np.ndarray,
                    min_contrast_hu: float) -> np.ndarray:
    """How much of each voxel is blood, from a linear mix of blood and local background."""
    contrast = np.maximum(blood_hu - background, min_contrast_hu)
    fraction = np.clip((hu - background) / contrast, 0.0, 1.0)
    return np.nan_to_num(fraction, nan=0.0)


def _lesion_density(hu: np.ndarray, lesion: np.ndarray, core_px: float) -> float:
    """Blood HU of a lesion: the median of its core, away from edges that partial volume dilutes
    (a lesion too thin for a core: a high percentile of the whole, for the same reason)."""
    core = per_slice(ndimage.binary_erosion, lesion, core_px)
    if core.sum() >= CORE_MIN_VOXELS:
        return float(np.median(hu[core]))
    return float(np.percentile(hu[lesion], 90))


def _widen(box, shape, margin_mm: float, spacing_mm) -> tuple[slice, ...]:
    return tuple(slice(max(0, b.start - p), min(n, b.stop + p))
                 for b, n, p in zip(box, shape, (int(np.ceil(margin_mm / d)) + 1 for d in spacing_mm)))


def _match_blood_content(lesions: np.ndarray, hu: np.ndarray, allowed: np.ndarray,
                         rim: np.ndarray, spacing_mm, cfg: ClassicalConfig) -> np.ndarray:
    """Resize each lesion's mask to its blood content, so its voxel count is its volume.

    Partial volume spreads a thin collection (sulcal SAH, a thick slice's first and last slice of
    a cast or crescent) over voxels that are only partly blood and read below any fixed
    threshold. Around each lesion, the blood fraction of a voxel is read against its lesion's
    blood density (median of its core) and the local background (tissue beyond the reach). The
    fractions summed over the lesion and a shell around it give its blood content in voxels, N
    (smoothing moves HU around but keeps their sum); the mask becomes the N voxels of highest
    fraction. Voxels in the bone rim keep their membership: bone makes their fraction
    meaningless, and the rim growth already decided them.
    """
    labels, _ = ndimage.label(lesions, structure=np.ones((3, 3, 3), bool))
    sigma = [cfg.pv_background_mm / d for d in spacing_mm]
    core_px = cfg.pv_core_mm / spacing_mm[1]
    out = lesions.copy()
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        box = _widen(box, lesions.shape, cfg.pv_reach_mm + 3 * cfg.pv_background_mm, spacing_mm)
        lesion = labels[box] == index
        near = _grow_mm(lesion, cfg.pv_reach_mm, spacing_mm)
        free = allowed[box] & (labels[box] == 0)
        measurable = lesion & ~rim[box]
        if not measurable.any():
            continue
        local = hu[box]
        blood_hu = _lesion_density(local, measurable, core_px)
        background = _local_background(local, free & ~near, sigma)
        fraction = _blood_fraction(local, blood_hu, background, cfg.pv_min_contrast_hu)
        fraction[lesion & rim[box]] = 1.0
        region = lesion | (near & free & ~rim[box])
        n_voxels = int(round(float(fraction[region].sum())))
        # Highest fraction first; the current mask wins ties, so a full lesion stays as it is.
        score = fraction[region] + 1e-3 * lesion[region]
        keep = np.zeros(score.shape, bool)
        keep[np.argsort(-score, kind="stable")[:n_voxels]] = True
        resized = np.zeros_like(lesion)
        resized[region] = keep
        out[box] &= ~lesion
        out[box] |= resized
    return out


class ClassicalEngine:
    def __init__(self, config: ClassicalConfig | None = None):
        self.config = config or ClassicalConfig()
        self.info = ModelInfo(name="ichnode-classical-hu", version=__version__)

    def analyse(self, volume: Volume) -> Findings:
        cfg = self.config
        dz, dy, dx = volume.spacing_mm
        cavity = intracranial_mask(volume.hu, volume.spacing_mm, cfg)
        sigma = smoothing_sigma_mm(volume.hu, cavity, volume.spacing_mm, cfg)
        hu = _smooth_soft_tissue(volume.hu, (sigma / dz, sigma / dy, sigma / dx), cfg.smoothing_max_hu)
        blood = (hu >= cfg.blood_hu_low) & (hu <= cfg.blood_hu_high) & cavity
        # Voxels next to bone are partly bone (partial volume) and look like blood: they may only
        # extend a collection that is already there (SDH, EDH), never start one.
        rim = near_bone(volume.hu > cfg.bone_hu, volume.spacing_mm, cfg.bone_rim_mm)
        hyperdense = blood & ~rim
        if cfg.midline_mm > 0:
            hyperdense &= ~midline_band(hu, cavity, volume.spacing_mm, cfg.midline_mm)
        if cfg.opening_radius_mm > 0:
            hyperdense = per_slice(ndimage.binary_opening, hyperdense, cfg.opening_radius_mm / dy)
        thick = dz > THICK_SLICE_MM
        seed_hu = cfg.seed_min_median_hu - THICK_SLICE_DILUTION_HU * thick
        min_voxels = cfg.min_lesion_ml / volume.voxel_ml
        lesions = _dense_enough(_drop_small(hyperdense, min_voxels), hu, seed_hu)
        if not thick:  # thick slabs dilute a thin collection below a clot's local mean (docstring)
            lesions = _drop_small(_dense_cores(lesions, hu, seed_hu, cfg.smoothing_max_hu,
                                               volume.spacing_mm), min_voxels)
        # Grow collections into the rim up to the bone: voxels that mix blood and bone read
        # above the blood band but belong to the collection (its volume counts them).
        rim_blood = rim & (hu >= cfg.blood_hu_low) & (volume.hu <= cfg.bone_hu)
        lesions |= per_slice(ndimage.binary_dilation, lesions, cfg.bone_rim_mm / dy) & (blood | rim_blood)
        lesions = _grow_to_local_midpoint(lesions, hu, cavity & (volume.hu <= cfg.bone_hu),
                                          cfg.edge_ring_mm / dy, cfg.edge_min_hu, cfg.edge_steps)
        if cfg.pv_reach_mm > 0:  # 0 turns the partial-volume sizing off
            lesions = _match_blood_content(lesions, hu, cavity & (volume.hu <= cfg.bone_hu),
                                           rim, volume.spacing_mm, cfg)

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
            sources=Findings.produced_by(self.info, {Findings.LABELS: lesions, Findings.HEATMAP: heatmap}),
        )
