"""A real head CT series as the background for synthetic hemorrhage: voxel geometry, the intracranial
cavity, CSF and ventricles, enhancement removal, thick-slab reformat and mirroring.

Everything is pure numpy/scipy on an ichnode.domain.Volume (hu (z, y, x), z along the slice normal).
World coordinates are patient LPS millimetres computed from the source headers, so lesion shapes are
physical shapes even on a gantry-tilted series. A Volume without headers (unit tests) gets an
axis-aligned grid from spacing_mm.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy import ndimage as ndi

from ..domain import Volume

BONE_HU = 300.0  # inner table and calcification; blood never goes here
SKULL_HU = 600.0  # dense bone: enhancement removal stays clear of it
ENHANCED_HU = 60.0  # intracranial non-bone voxels above this (local mean) are contrast-enhanced:
# arteries and sinuses (120-500 HU) but also dura, falx, tentorium and cortical veins (55-90 HU)
BLOOD_POOL_HU = 50.0  # non-contrast blood in vessels and sinuses (40-60 HU)
CSF_HU, BRAIN_HU = 8.0, 34.0  # fraction of CSF in a voxel is interpolated between these
_COARSE = (2, 4, 4)  # block size of the coarse grid used to find the cavity (about 1.2 x 1.8 x 1.8 mm)


@dataclass(frozen=True, eq=False)
class VoxelGrid:
    """World (LPS mm) position of voxel (k, i, j) = ipp[k] + i*dy*col + j*dx*row."""

    ipp: np.ndarray  # (nz, 3) ImagePositionPatient per slice
    row: np.ndarray  # direction of increasing column index j
    col: np.ndarray  # direction of increasing row index i
    spacing_mm: tuple[float, float, float]

    @classmethod
    def of(cls, volume: Volume) -> "VoxelGrid":
        dz, dy, dx = volume.spacing_mm
        if volume.datasets:
            iop = np.asarray(volume.datasets[0].ImageOrientationPatient, float)
            ipp = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in volume.datasets])
            return cls(ipp, iop[:3], iop[3:], (dz, dy, dx))
        ipp = np.zeros((volume.hu.shape[0], 3))
        ipp[:, 2] = np.arange(volume.hu.shape[0]) * dz
        return cls(ipp, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), (dz, dy, dx))

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.col)

    @cached_property
    def along(self) -> np.ndarray:
        """Slice positions along the normal (increasing)."""
        return self.ipp @ self.normal

    def world(self, box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable float32 X, Y, Z of the voxel centres in box (tuple of 3 slices)."""
        ks, is_, js = (np.arange(s.start, s.stop) for s in box)
        _, dy, dx = self.spacing_mm
        out = []
        for a in range(3):
            c = self.ipp[ks, a][:, None, None] + (is_ * dy * self.col[a])[None, :, None] \
                + (js * dx * self.row[a])[None, None, :]
            out.append(c.astype(np.float32))
        return tuple(out)

    def points(self, k, i, j) -> np.ndarray:
        """(n, 3) world positions of voxel index arrays."""
        _, dy, dx = self.spacing_mm
        return self.ipp[k] + np.outer(np.asarray(i) * dy, self.col) + np.outer(np.asarray(j) * dx, self.row)

    def index_of(self, point) -> np.ndarray:
        """Fractional (k, i, j) of a world point."""
        p = np.asarray(point, float)
        k = float(np.interp(p @ self.normal, self.along, np.arange(len(self.along))))
        base = np.array([np.interp(k, np.arange(len(self.ipp)), self.ipp[:, a]) for a in range(3)])
        _, dy, dx = self.spacing_mm
        return np.array([k, (p - base) @ self.col / dy, (p - base) @ self.row / dx])

    def point_of(self, kij) -> np.ndarray:
        k, i, j = (float(v) for v in kij)
        base = np.array([np.interp(k, np.arange(len(self.ipp)), self.ipp[:, a]) for a in range(3)])
        _, dy, dx = self.spacing_mm
        return base + i * dy * self.col + j * dx * self.row

    def box_around(self, centre, radius_mm: float, shape) -> tuple[slice, slice, slice]:
        """Index box holding the world ball (centre, radius); widened for the tilt's shear."""
        c = self.index_of(centre)
        shear = abs(float(np.linalg.norm(np.cross(self.ipp[-1] - self.ipp[0], self.normal))))
        shear /= max(abs(self.along[-1] - self.along[0]), 1e-6)  # in-plane drift per mm along normal
        reach = [radius_mm / d for d in self.spacing_mm]
        reach[1] += radius_mm * shear / self.spacing_mm[1]
        reach[2] += radius_mm * shear / self.spacing_mm[2]
        return tuple(slice(max(0, int(np.floor(ci - r)) - 1), min(n, int(np.ceil(ci + r)) + 2))
                     for ci, r, n in zip(c, reach, shape))


def _block_view(hu: np.ndarray):
    nz, ny, nx = (s // b * b for s, b in zip(hu.shape, _COARSE))
    bz, by, bx = _COARSE
    return hu[:nz, :ny, :nx].reshape(nz // bz, bz, ny // by, by, nx // bx, bx)


def _upsample(coarse: np.ndarray, shape) -> np.ndarray:
    up = coarse
    for axis, b in enumerate(_COARSE):
        up = np.repeat(up, b, axis=axis)
    pad = [(0, n - u) for n, u in zip(shape, up.shape)]
    return np.pad(up, pad, mode="edge")


def find_cranium(hu: np.ndarray, spacing_mm, opening_mm: float = 10.0) -> np.ndarray:
    """Everything inside the skull (bool, full resolution, bone and vessels included).

    Found on a coarse grid as the opening (radius opening_mm) of the non-bone, non-air space around
    the deepest point, grown a few voxels: openings in the skull base narrower than the opening
    (optic canals, fissures) do not let the cavity leak into the face and scalp.
    """
    blocks = _block_view(hu)
    sp = np.asarray(spacing_mm) * _COARSE
    open_space = ~(blocks > BONE_HU).any(axis=(1, 3, 5)) & (blocks.mean(axis=(1, 3, 5)) > -100)
    depth = ndi.distance_transform_edt(open_space, sampling=sp)
    core = depth > opening_mm
    labels, _ = ndi.label(core)
    core = labels == labels[np.unravel_index(np.argmax(depth), depth.shape)]
    opened = (ndi.distance_transform_edt(~core, sampling=sp) <= opening_mm) & open_space
    grown = ndi.binary_dilation(opened, iterations=5, mask=open_space)
    return _upsample(ndi.binary_dilation(grown), hu.shape) & (hu > -100)


def csf_fraction(hu_smooth: np.ndarray) -> np.ndarray:
    """Share of CSF in a voxel from its (smoothed) HU: 1 at CSF density, 0 at brain density."""
    return np.clip((BRAIN_HU - hu_smooth) / (BRAIN_HU - CSF_HU), 0.0, 1.0).astype(np.float32)


class Anatomy:
    """What lesion placement needs to know about one background (computed once, then cached)."""

    def __init__(self, volume: Volume, cranium: np.ndarray | None = None):
        self.volume, self.grid = volume, VoxelGrid.of(volume)
        hu = volume.hu
        self.cranium = find_cranium(hu, volume.spacing_mm) if cranium is None else cranium
        self.cavity = self.cranium & (hu <= BONE_HU)  # intracranial, not bone
        idx = np.argwhere(self.cavity[::4, ::4, ::4]) * 4
        pts = np.stack([self.grid.point_of(p) for p in idx[:: max(1, len(idx) // 20000)]])
        self.centre = pts.mean(0)
        self.lo, self.hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)

    @cached_property
    def coarse_depth(self) -> np.ndarray:
        """Distance (mm) to the cavity wall on the coarse grid."""
        cav = _block_view(self.cavity.astype(np.float32)).mean(axis=(1, 3, 5)) > 0.5
        return ndi.distance_transform_edt(cav, sampling=np.asarray(self.volume.spacing_mm) * _COARSE)

    def depth_at(self, kij) -> float:
        c = np.asarray(kij, float) / _COARSE
        return float(ndi.map_coordinates(self.coarse_depth, c[:, None], order=1, mode="nearest")[0])

    @cached_property
    def ventricles(self) -> np.ndarray:
        """Coarse bool mask of the lateral (and third) ventricles: large CSF spaces deep in the brain."""
        mean = _block_view(self.volume.hu).mean(axis=(1, 3, 5))
        csf = (mean < 18) & (mean > -20) & (self.coarse_depth > 14)
        csf = ndi.binary_opening(csf)
        labels, n = ndi.label(csf)
        if n == 0:
            return csf
        sizes = ndi.sum_labels(np.ones_like(mean), labels, range(1, n + 1))
        voxel_ml = float(np.prod(np.asarray(self.volume.spacing_mm) * _COARSE)) / 1000
        keep = [i + 1 for i, s in enumerate(sizes) if s * voxel_ml > 1.0]
        if not keep:
            keep = [int(np.argmax(sizes)) + 1]
        return np.isin(labels, keep)

    def ventricles_full(self, box) -> np.ndarray:
        """Ventricle mask (bool) in a full-resolution box, one coarse voxel grown."""
        up = _upsample(ndi.binary_dilation(self.ventricles), self.volume.hu.shape)
        return up[box]

    @cached_property
    def ventricle_centre(self) -> np.ndarray:
        idx = np.argwhere(self.ventricles) * _COARSE + np.array(_COARSE) / 2.0
        if len(idx) == 0:
            return self.centre
        return np.mean([self.grid.point_of(p) for p in idx[:: max(1, len(idx) // 4000)]], axis=0)

    @cached_property
    def vessel_hub(self) -> np.ndarray:
        """Circle of Willis (centroid of enhanced voxels deep near the midline) when the series is
        enhanced; else a point below the ventricles. Centre of the basal cisterns."""
        mean = _block_view(self.volume.hu).mean(axis=(1, 3, 5))
        hot = (mean > 150) & (mean < SKULL_HU) & (self.coarse_depth > 15)
        idx = np.argwhere(hot) * _COARSE + np.array(_COARSE) / 2.0
        pts = np.array([self.grid.point_of(p) for p in idx]) if len(idx) else np.zeros((0, 3))
        if len(pts):
            pts = pts[np.abs(pts[:, 0] - self.centre[0]) < 25]
        if len(pts) >= 5:
            return np.median(pts, axis=0)
        return self.ventricle_centre + np.array([0.0, -12.0, -22.0])


def smooth(hu: np.ndarray, sigma_mm: float, spacing_mm) -> np.ndarray:
    return ndi.gaussian_filter(hu.astype(np.float32), [sigma_mm / d for d in spacing_mm], truncate=3.0)


def remove_enhancement(volume: Volume, cranium: np.ndarray | None = None,
                       pool_hu: float = BLOOD_POOL_HU) -> Volume:
    """Bring enhanced vessels, sinuses and choroid plexus inside the cranium to non-contrast density.

    Voxels inside the cranium, farther than ~1 mm from dense bone (> 600 HU), whose local mean is
    above 90 HU are set to pool_hu plus their own residual noise (clipped to +-18 HU so vessel edges
    leave no speckle); the weight fades over ~1 voxel around them, so edges keep partial volume.
    new = (1 - w) * hu + w * (pool + clip(hu - local_mean)) where local_mean > pool, else unchanged.
    """
    if cranium is None:
        cranium = find_cranium(volume.hu, volume.spacing_mm)
    zs, ys, xs = (np.nonzero(cranium.any(axis=a))[0] for a in ((1, 2), (0, 2), (0, 1)))
    if len(zs) == 0:
        return volume
    box = tuple(slice(max(0, v[0] - 2), v[-1] + 3) for v in (zs, ys, xs))
    hu = volume.hu[box]
    local = ndi.gaussian_filter(hu, (0.5, 0.7, 0.7), truncate=3.0)
    near_skull = ndi.binary_dilation(hu > SKULL_HU, iterations=2)
    core = cranium[box] & (local > ENHANCED_HU) & ~near_skull
    if not core.any():
        return volume
    w = np.clip(2.0 * ndi.gaussian_filter(ndi.binary_dilation(core).astype(np.float32), 0.7), 0.0, 1.0)
    w[near_skull | (local <= pool_hu)] = 0.0
    target = pool_hu + np.clip(hu - local, -18.0, 18.0)
    out = volume.hu.copy()
    out[box] = hu + w * (target - hu)
    return replace(volume, hu=out)


def mirror(volume: Volume) -> Volume:
    """Left-right flip of the image content (columns); geometry headers unchanged."""
    return replace(volume, hu=np.ascontiguousarray(volume.hu[:, :, ::-1]))


def slab_weights(along: np.ndarray, thickness_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights W (slabs x thin slices) of a thick-slab reformat and the slab centres along the normal.

    Each thin slice covers the interval half-way to its neighbours; slab s covers
    [start + s*T, start + (s+1)*T) and W[s, i] = overlap(slice i, slab s) / T, so a fraction field
    reformatted with W keeps its integral (sum f * thickness). Incomplete last slab dropped.
    """
    mids = (along[1:] + along[:-1]) / 2
    first = along[0] - (along[1] - along[0]) / 2 if len(along) > 1 else along[0] - thickness_mm / 2
    last = along[-1] + (along[-1] - along[-2]) / 2 if len(along) > 1 else along[0] + thickness_mm / 2
    lo, hi = np.concatenate([[first], mids]), np.concatenate([mids, [last]])
    n = max(1, int(np.floor((last - first) / thickness_mm + 1e-6)))
    starts = first + np.arange(n) * thickness_mm
    overlap = np.clip(np.minimum(hi[None], starts[:, None] + thickness_mm) - np.maximum(lo[None], starts[:, None]),
                      0, None)
    return (overlap / thickness_mm).astype(np.float32), starts + thickness_mm / 2


def reformat_thick(volume: Volume, thickness_mm: float, *fields: np.ndarray):
    """Thick-slab reformat of a thin series (and of any extra (z, y, x) fields, e.g. blood fraction).
    Returns (volume, *fields); slab headers are copies of the nearest thin slice's with
    ImagePositionPatient interpolated along the table and SliceThickness set."""
    grid = VoxelGrid.of(volume)
    weights, centres = slab_weights(grid.along, thickness_mm)

    def apply(a):
        return np.tensordot(weights, a, axes=(1, 0)).astype(a.dtype if a.dtype.kind == "f" else np.float32)

    idx = np.interp(centres, grid.along, np.arange(len(grid.along)))
    datasets = []
    for c, k in zip(centres, idx):
        if not volume.datasets:
            break
        ds = copy.deepcopy(volume.datasets[int(round(k))])
        ds.ImagePositionPatient = [f"{np.interp(k, np.arange(len(grid.ipp)), grid.ipp[:, a]):.4f}" for a in range(3)]
        ds.SliceThickness = f"{thickness_mm:g}"
        if "SliceLocation" in ds:
            ds.SliceLocation = f"{c:.4f}"
        datasets.append(ds)
    out = replace(volume, hu=apply(volume.hu), spacing_mm=(float(thickness_mm),) + tuple(volume.spacing_mm[1:]),
                  datasets=tuple(datasets))
    return (out, *(apply(f) for f in fields))
