"""What the skull encloses, slice by slice, and the 2D morphology both the classical engine and the
contrast check use. Pure functions on HU arrays (z, y, x)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay, QhullError

# Open skull rings (enclosed): a slice with at least MIN_RING_PX bone pixels (working resolution)
# whose fill covers under OPEN_RING_FRACTION of its bounding ellipse, and whose convex hull has
# RING_BONE_FRACTION of its edge within RING_GAP_MM of bone. Measured: the phantom's ring opened by
# the frontal sinus 0.97; the real CQ500 series' face, neck and vertex slices 0.34 to 0.53.
MIN_RING_PX, OPEN_RING_FRACTION = 200, 0.1
RING_BONE_FRACTION, RING_GAP_MM = 0.8, 3.0


def disk(radius_px: float) -> np.ndarray:
    r = max(1, int(np.ceil(radius_px)))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy ** 2 + xx ** 2) <= radius_px ** 2 + 0.5


def per_slice(op, mask: np.ndarray, radius_px: float) -> np.ndarray:
    """A 2D morphological operation on every slice (slice thickness varies too much for 3D)."""
    return op(mask, structure=disk(radius_px)[None, :, :])


def normalised_gaussian(hu: np.ndarray, weight: np.ndarray, sigma_vox, fill: float) -> np.ndarray:
    """Gaussian mean of hu over the voxels where weight is 1 (normalised convolution); `fill`
    where none is near."""
    num = ndimage.gaussian_filter(hu.astype(np.float32, copy=False) * weight, sigma_vox)
    den = ndimage.gaussian_filter(weight, sigma_vox)
    return np.divide(num, den, out=np.full_like(num, fill), where=den > 1e-3)


def _convex_interior(mask: np.ndarray) -> np.ndarray:
    """The pixels inside the convex hull of a 2D mask's pixels."""
    points = np.argwhere(mask)
    try:
        hull = Delaunay(points[ConvexHull(points).vertices])
    except (QhullError, ValueError):  # collinear or too few points: nothing is enclosed
        return np.zeros_like(mask)
    (y0, x0), (y1, x1) = points.min(0), points.max(0) + 1
    yy, xx = np.mgrid[y0:y1, x0:x1]
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = (hull.find_simplex(np.column_stack([yy.ravel(), xx.ravel()])) >= 0
                         ).reshape(yy.shape)
    return out


def _ellipse_area(mask: np.ndarray) -> float:
    """The area of the ellipse inscribed in a mask's bounding box: about what a skull encloses."""
    ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return np.pi / 4 * (ys[-1] - ys[0] + 1) * (xs[-1] - xs[0] + 1)


def enclosed(bone: np.ndarray, closed_bone: np.ndarray, px: float) -> np.ndarray:
    """What the skull encloses on one slice. A ring the closing could not seal (a sinus or a
    fracture line through it) encloses nothing to fill; when the skull's convex hull is nearly all
    bone along its edge (a ring with a gap, not the scattered bone of the face, neck or vertex),
    the hull stands in, so a hemorrhage on that slice is still looked for."""
    inside = ndimage.binary_fill_holes(closed_bone) & ~closed_bone
    if closed_bone.sum() < MIN_RING_PX or inside.sum() >= OPEN_RING_FRACTION * _ellipse_area(closed_bone):
        return inside
    hull = _convex_interior(closed_bone)
    edge = hull & ~ndimage.binary_erosion(hull)
    near_bone = ndimage.binary_dilation(bone, disk(RING_GAP_MM / px))
    if not edge.any() or near_bone[edge].mean() < RING_BONE_FRACTION:
        return inside
    return hull & ~closed_bone


def bridge_slices(mask: np.ndarray, reach: int) -> np.ndarray:
    """mask plus every voxel that mask holds within `reach` slices both below and above it: a
    slice whose own outline failed (an open ring at the skull base) borrows its neighbours'."""
    below = np.zeros_like(mask)
    above = np.zeros_like(mask)
    for k in range(1, min(reach, mask.shape[0] - 1) + 1):
        below[k:] |= mask[:-k]
        above[:-k] |= mask[k:]
    return mask | (below & above)


def major_components(mask: np.ndarray, fraction: float, structure=None,
                     min_voxels: float = np.inf) -> np.ndarray:
    """The connected components of mask at least `fraction` of the largest, or of min_voxels."""
    labels, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = (sizes >= fraction * sizes.max()) | (sizes >= min_voxels)
    keep[0] = False
    return keep[labels]


def skull_only(bone: np.ndarray) -> np.ndarray:
    """The skull among dense voxels. The head holder's arms (about 340 HU, 2-3 cm outside the scalp
    on the real series) and calcifications are separate and small; a holder kept in would widen
    the hull of an open ring."""
    return major_components(bone, 0.1, structure=np.ones((3, 3, 3), bool))


def skull_interior(bone: np.ndarray, px: float) -> np.ndarray:
    """Per slice, what a bone mask encloses; closing first bridges sutures, foramina and
    beam-hardening breaks in the ring."""
    closed = per_slice(ndimage.binary_closing, bone, 4.0 / px)
    return np.stack([enclosed(b, c, px) for b, c in zip(bone, closed)])


def near_bone(bone: np.ndarray, spacing_mm, reach_mm: float, widen_neighbours: bool = False) -> np.ndarray:
    """Voxels within reach_mm of bone in-plane and, where slices are thicker than reach_mm, under
    bone on the next slice up or down (within reach_mm of it with widen_neighbours): a thick slice
    that cuts the skull tangentially (vertex, orbital roofs, petrous ridges) holds bone's partial
    volume wherever its neighbour has bone, though its own voxels stay under the bone threshold."""
    near = per_slice(ndimage.binary_dilation, bone, reach_mm / spacing_mm[1])
    if spacing_mm[0] > reach_mm:
        neighbours = near.copy() if widen_neighbours else bone
        near[1:] |= neighbours[:-1]
        near[:-1] |= neighbours[1:]
    return near


def working_step(pixel_mm: float, working_mm: float = 1.0) -> int:
    """Subsampling step that brings pixels to about working_mm (masks need only be right to it)."""
    return max(1, int(working_mm // pixel_mm))


def _fit_plane(cavity: np.ndarray) -> np.ndarray | None:
    """Mid-sagittal plane x = a + b*y + c*z (voxel units) through the midpoints of the cavity's
    wide rows (the skull is left-right symmetric; narrow rows at the poles are skipped), with
    one round of outlier rejection; None for a cavity too small to say."""
    zs, ys, mids = [], [], []
    for z, plane in enumerate(cavity):
        rows = np.nonzero(plane.any(axis=1))[0]
        if len(rows) == 0:
            continue
        left = np.argmax(plane[rows], axis=1)
        right = plane.shape[1] - 1 - np.argmax(plane[rows, ::-1], axis=1)
        wide = (right - left) >= 0.5 * (right - left).max()
        zs.append(np.full(wide.sum(), z))
        ys.append(rows[wide])
        mids.append((left[wide] + right[wide]) / 2.0)
    if sum(len(z) for z in zs) < 20:
        return None
    z, y, x = (np.concatenate(v).astype(float) for v in (zs, ys, mids))
    design = np.column_stack([np.ones_like(y), y, z])
    coef = np.linalg.lstsq(design, x, rcond=None)[0]
    residual = np.abs(x - design @ coef)
    keep = residual <= 3.0 * np.median(residual) + 1.0
    return np.linalg.lstsq(design[keep], x[keep], rcond=None)[0]


def _falx_curve(hu_slice: np.ndarray, cavity_slice: np.ndarray, centre: np.ndarray,
                search_px: int) -> np.ndarray | None:
    """Per row, the densest column within search_px of the plane (the falx and the sagittal
    sinus are the densest midline tissue), smoothed by a robust quadratic fit over the rows; None
    where the slice has too few rows. Follows a falx that bows away from the skull's symmetry
    plane (occipital petalia, a rotated head)."""
    rows = np.nonzero(cavity_slice.any(axis=1))[0]
    if len(rows) < 20:
        return None
    offsets = np.arange(-search_px, search_px + 1)
    cols = np.clip(np.round(centre[rows]).astype(int)[:, None] + offsets, 0, hu_slice.shape[1] - 1)
    values = np.where(cavity_slice[rows[:, None], cols], hu_slice[rows[:, None], cols], -np.inf)
    peaks = cols[np.arange(len(rows)), np.argmax(values, axis=1)].astype(float)
    coef = np.polyfit(rows, peaks, 2)
    residual = np.abs(peaks - np.polyval(coef, rows))
    keep = residual <= 3.0 * np.median(residual) + 1.0
    if keep.sum() < 10:
        return None
    return np.polyval(np.polyfit(rows[keep], peaks[keep], 2), np.arange(hu_slice.shape[0]))


def midline_band(hu: np.ndarray, cavity: np.ndarray, spacing_mm, half_width_mm: float,
                 search_mm: float = 12.0) -> np.ndarray:
    """Voxels within half_width_mm (in-plane) of the midline, where the falx and the superior
    sagittal and straight sinuses lie: dense on every head CT, never a lesion's seed. The midline
    is the skull's symmetry plane and, per slice, the falx traced near it (both are kept: a trace
    pulled aside by a lesion must not open the plane's band)."""
    band = np.zeros(cavity.shape, bool)
    coef = _fit_plane(cavity)
    if coef is None:
        return band
    half_px = half_width_mm / spacing_mm[2]
    columns = np.arange(cavity.shape[2])[None, :]
    rows = np.arange(cavity.shape[1])
    for k in range(cavity.shape[0]):
        centre = coef[0] + coef[1] * rows + coef[2] * k
        band[k] = np.abs(columns - centre[:, None]) <= half_px
        falx = _falx_curve(hu[k], cavity[k], centre, int(round(search_mm / spacing_mm[2])))
        if falx is not None:
            band[k] |= np.abs(columns - falx[:, None]) <= half_px
    return band
