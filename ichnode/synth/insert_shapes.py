"""Hemorrhage shapes placed in a real background's anatomy, as blood fraction per voxel.

Each shape works in a fixed index box of the background and has one size parameter s: fraction(s)
returns float32 blood fractions (0..1) in that box, growing monotonically with s (roughly in
proportion), so lesions.solve_scale can hit a requested volume. Partial volume: geometric shapes are
supersampled (3x3x3) on their boundary voxels; shapes bounded by anatomy (CSF, inner table) use the
voxel's CSF share or a linear ramp of the distance to the wall over one voxel.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from .background import BONE_HU, Anatomy, csf_fraction, smooth

# Convexity directions from the head centre (LPS: +x patient left, +y posterior, +z superior);
# x is multiplied by the side (+1 left, -1 right).
CONVEXITY = {"frontal": (0.45, -0.85, 0.35), "parietal": (0.7, 0.25, 0.65), "temporal": (0.97, -0.15, -0.2)}
LOBAR_DIRECTION = (0.55, -0.35, 0.55)
MAX_SCALE = 3.0  # boxes are sized for s up to this


def unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def rotation(rng: np.random.Generator, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    a, b = np.radians(rng.uniform(-yaw_deg, yaw_deg)), np.radians(rng.uniform(-pitch_deg, pitch_deg))
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rz @ rx


def wall_point(anat: Anatomy, direction) -> np.ndarray:
    """Where a ray from the head centre leaves the cavity (the inner table)."""
    u = unit(direction)
    last = anat.centre
    for r in np.arange(0.0, 130.0, 1.0):
        p = anat.centre + r * u
        k, i, j = np.round(anat.grid.index_of(p)).astype(int)
        shape = anat.cavity.shape
        if not (0 <= k < shape[0] and 0 <= i < shape[1] and 0 <= j < shape[2]):
            break
        if anat.cavity[k, i, j]:
            last = p
        elif r > 20 and anat.volume.hu[k, i, j] > BONE_HU:
            break
    return last


def depth_mm(anat: Anatomy, box) -> np.ndarray:
    """Distance (mm) to the cavity wall in a full-resolution box (interpolated coarse distance,
    corrected by the full-resolution cavity: 0 outside it)."""
    ks, is_, js = (np.arange(s.start, s.stop) + 0.5 for s in box)
    from .background import _COARSE
    coords = np.meshgrid(ks / _COARSE[0] - 0.5, is_ / _COARSE[1] - 0.5, js / _COARSE[2] - 0.5, indexing="ij")
    d = ndi.map_coordinates(anat.coarse_depth.astype(np.float32), coords, order=1, mode="nearest")
    return np.where(anat.cavity[box], d, 0.0).astype(np.float32)


def coarse_in_box(coarse: np.ndarray, box) -> np.ndarray:
    """A coarse-grid bool mask upsampled (nearest) into a full-resolution box."""
    from .background import _COARSE
    idx = [np.minimum((np.arange(s.start, s.stop)) // b, n - 1) for s, b, n in zip(box, _COARSE, coarse.shape)]
    return coarse[np.ix_(*idx)]


def depth_at(anat: Anatomy, k, i, j) -> np.ndarray:
    """Interpolated distance (mm) to the cavity wall at full-resolution voxel indices."""
    from .background import _COARSE
    coords = np.stack([(np.asarray(a) + 0.5) / b - 0.5 for a, b in zip((k, i, j), _COARSE)])
    return ndi.map_coordinates(anat.coarse_depth.astype(np.float32), coords, order=1, mode="nearest")


def supersample(inside, X, Y, Z, grid, n: int = 3) -> np.ndarray:
    """Fraction of each voxel inside the implicit shape `inside(X, Y, Z) -> bool`: centres first,
    then n^3 sub-samples on voxels whose neighbourhood is mixed."""
    centre = np.broadcast_to(inside(X, Y, Z), np.broadcast_shapes(X.shape, Y.shape, Z.shape))
    frac = centre.astype(np.float32)
    edge = ndi.binary_dilation(centre) & ~ndi.binary_erosion(centre, border_value=1)
    if not edge.any():
        return frac
    idx = np.nonzero(edge)
    Xe, Ye, Ze = (np.broadcast_to(a, centre.shape)[idx] for a in (X, Y, Z))
    dz, dy, dx = grid.spacing_mm
    offs = (np.arange(n) + 0.5) / n - 0.5
    acc = np.zeros(len(Xe), np.float32)
    for oz in offs:
        for oy in offs:
            for ox in offs:
                d = oz * dz * grid.normal + oy * dy * grid.col + ox * dx * grid.row
                acc += inside(Xe + d[0], Ye + d[1], Ze + d[2])
    frac[idx] = acc / n ** 3
    return frac


class Shape:
    """A lesion in a fixed box: fraction(s) -> float32 array of the box's shape."""

    box: tuple[slice, slice, slice]
    info: dict

    def fraction(self, s: float) -> np.ndarray:
        raise NotImplementedError


class Parenchymal(Shape):
    """IPH: ellipsoid (regular) or core plus satellite lobes (irregular), clipped to parenchyma
    (2.5 mm clear of the wall, out of the ventricles)."""

    def __init__(self, anat: Anatomy, rng, target_ml: float, location: str, side: int, shape: str, shift):
        self.anat, self.grid = anat, anat.grid
        r0 = (3.0 * target_ml * 1000.0 / (4.0 * math.pi)) ** (1 / 3)
        self.centre = self._place(anat, location, side, r0, shift)
        ratio = np.array([1.0, 1.3, 0.85]) * rng.uniform(0.9, 1.1, 3)
        ratio /= np.prod(ratio) ** (1 / 3)
        rot = rotation(rng, 30, 15)
        self.lobes = [(np.zeros(3), r0 * ratio, rot)]
        if shape == "irregular":
            self.lobes = [(np.zeros(3), 0.75 * r0 * ratio, rot)]
            for _ in range(int(rng.integers(3, 6))):
                off = unit(rng.normal(size=3) * (1, 1, 0.6)) * r0 * rng.uniform(0.8, 1.15)
                self.lobes.append((off, r0 * ratio * rng.uniform(0.4, 0.65, 3), rotation(rng, 90, 45)))
        reach = max(np.linalg.norm(o) + a.max() for o, a, _ in self.lobes) * MAX_SCALE ** (1 / 3) + 2.0
        self.box = self.grid.box_around(self.centre, reach, anat.cavity.shape)
        self.X, self.Y, self.Z = self.grid.world(self.box)
        vent = anat.ventricles_full(self.box)
        self.allowed = (depth_mm(anat, self.box) >= 2.5) & ~vent & (anat.volume.hu[self.box] <= BONE_HU)
        self.info = {"centre_mm": [round(float(v), 2) for v in self.centre]}

    @staticmethod
    def _place(anat: Anatomy, location: str, side: int, r0: float, shift) -> np.ndarray:
        mid, c, v = anat.centre[0], anat.centre, anat.ventricle_centre
        if location == "deep":
            p = np.array([mid + side * 24.0, v[1] + 4.0, v[2] - 6.0])
        elif location == "infratentorial":
            p = np.array([mid + side * 22.0, c[1] + 0.45 * (anat.hi[1] - c[1]), anat.lo[2] + 24.0])
        else:
            u = unit(np.array(LOBAR_DIRECTION) * (side, 1, 1))
            w = wall_point(anat, u)
            p = w - u * max(14.0, 0.9 * r0)
        p = p + np.asarray(shift, float)
        need = min(0.8 * r0 + 3.0, 18.0 if location != "infratentorial" else 10.0)
        return _snap(anat, p, need)

    def _inside(self, s):
        g = s ** (1 / 3)
        c = self.centre

        def inside(X, Y, Z):
            m = False
            for off, a, rot in self.lobes:
                cx, cy, cz = (c + off * g).tolist()
                ax, ay, az = (a * g).tolist()
                dx, dy, dz = X - cx, Y - cy, Z - cz
                r = rot.tolist()
                q = [r[0][i] * dx + r[1][i] * dy + r[2][i] * dz for i in range(3)]
                m = m | ((q[0] / ax) ** 2 + (q[1] / ay) ** 2 + (q[2] / az) ** 2 < 1.0)
            return m
        return inside

    def fraction(self, s):
        return supersample(self._inside(s), self.X, self.Y, self.Z, self.grid) * self.allowed

    def coarse_fraction(self, s):
        """Centre-sampled fraction: cheap, for the first steps of the volume search."""
        return np.broadcast_to(self._inside(s)(self.X, self.Y, self.Z), self.allowed.shape) & self.allowed


def _snap(anat: Anatomy, p, need_depth: float, search_mm: float = 25.0) -> np.ndarray:
    """The nearest coarse voxel to p that is at least need_depth deep and outside the ventricles."""
    from .background import _COARSE
    kij = anat.grid.index_of(p) / _COARSE
    depth = anat.coarse_depth
    sp = np.asarray(anat.volume.spacing_mm) * _COARSE
    r = np.ceil(search_mm / sp).astype(int)
    lo = np.maximum(np.floor(kij).astype(int) - r, 0)
    hi = np.minimum(np.floor(kij).astype(int) + r + 1, depth.shape)
    sub = tuple(slice(a, b) for a, b in zip(lo, hi))
    ok = (depth[sub] >= need_depth) & ~ndi.binary_dilation(anat.ventricles)[sub]
    if not ok.any():
        return np.asarray(p, float)
    idx = np.argwhere(ok) + lo
    dist = np.linalg.norm((idx + 0.5 - kij) * sp, axis=1)
    best = idx[np.argmin(dist)] + 0.5
    return anat.grid.point_of(best * _COARSE)


class ExtraAxial(Shape):
    """SDH (crescent, thickness tapering as 1 - (a/a0)^2 over a wide convexity) or EDH (biconvex
    lens, sqrt profile, compact) lying against the inner table, on one side of the midline.
    Distance to the wall is interpolated; bone voxels (> 300 HU) get no blood, and blood fades out
    over 100..300 HU (partial volume of the inner table). The box is large, so only voxels near the
    wall are computed (sparse) and scattered into the box."""

    def __init__(self, anat: Anatomy, subtype: str, region: str, side: int, shift):
        self.anat, self.grid, self.subtype, self.side = anat, anat.grid, subtype, side
        u = unit(np.array(CONVEXITY[region]) * (side, 1, 1))
        self.wall = wall_point(anat, u) + np.asarray(shift, float)
        self.u = unit(self.wall - anat.centre)
        self.t0, self.a0 = (8.0, 0.62) if subtype == "sdh" else (11.0, 0.45)
        rho = float(np.linalg.norm(self.wall - anat.centre))
        t_max, a_max = self._params(MAX_SCALE)
        self.box = self.grid.box_around(self.wall, rho * math.sin(min(a_max, 1.45)) + t_max + 4, anat.cavity.shape)
        near = coarse_in_box(anat.coarse_depth < t_max + 4.0, self.box) & anat.cavity[self.box]
        self.idx = np.nonzero(near)
        k, i, j = (a + s.start for a, s in zip(self.idx, self.box))
        P = self.grid.points(k, i, j)
        self.depth = depth_at(anat, k, i, j)
        q = P - anat.centre
        cosang = (q @ self.u) / np.maximum(np.linalg.norm(q, axis=1), 1e-3)
        self.angle = np.arccos(np.clip(cosang, -1, 1)).astype(np.float32)
        hu = anat.volume.hu[k, i, j]
        wall_ok = np.clip((BONE_HU - hu) / (BONE_HU - 100.0), 0, 1)
        same_side = np.clip((P[:, 0] - anat.centre[0]) * side - 1.0, 0, 1)
        self.allowed = (wall_ok * same_side).astype(np.float32)
        self.h = float(np.mean(self.grid.spacing_mm))
        self.shape = near.shape
        self.info = {"region": region, "wall_point_mm": [round(float(v), 2) for v in self.wall]}

    def _params(self, s):
        g = s ** (1 / 3)
        return self.t0 * g, min(self.a0 * g, 1.45)

    def sparse_fraction(self, s):
        t, a0 = self._params(s)
        rho = np.clip(1.0 - (self.angle / a0) ** 2, 0.0, None)
        prof = t * (rho if self.subtype == "sdh" else np.sqrt(rho))
        # Wall distance is to the nearest wall voxel centre; half a voxel lies inside the cavity.
        f = np.clip((prof - (self.depth - 0.5 * self.h)) / self.h, 0.0, 1.0)
        return (f * (prof > 0) * self.allowed).astype(np.float32)

    def total(self, s) -> float:
        return float(self.sparse_fraction(s).sum())

    def fraction(self, s):
        out = np.zeros(self.shape, np.float32)
        out[self.idx] = self.sparse_fraction(s)
        return out


class Subarachnoid(Shape):
    """SAH: blood replaces the CSF (share per voxel) of the sulci, fissures or cisterns inside a ball
    around the region centre; s grows the ball. Convexity SAH keeps to the outer 20 mm of the brain."""

    R0 = {"frontal": 26.0, "parietal": 26.0, "temporal": 26.0, "sylvian": 18.0, "basal": 18.0}

    def __init__(self, anat: Anatomy, region: str, side: int, shift):
        self.anat, self.grid = anat, anat.grid
        if region in CONVEXITY:
            u = unit(np.array(CONVEXITY[region]) * (side, 1, 1))
            self.c = wall_point(anat, u) - 8.0 * u
        elif region == "sylvian":
            self.c = anat.vessel_hub + np.array([side * 32.0, -4.0, 6.0])
        else:
            self.c = anat.vessel_hub.copy()
        self.c = self.c + np.asarray(shift, float)
        self.r0 = self.R0[region]
        self.box = self.grid.box_around(self.c, self.r0 * MAX_SCALE ** (1 / 3) + 2, anat.cavity.shape)
        X, Y, Z = self.grid.world(self.box)
        self.dist = np.sqrt((X - self.c[0]) ** 2 + (Y - self.c[1]) ** 2 + (Z - self.c[2]) ** 2)
        depth = depth_mm(anat, self.box)
        hu = anat.volume.hu[self.box]
        csf = csf_fraction(smooth(hu, 0.5, self.grid.spacing_mm)) * (hu > -50) * (hu < BONE_HU)
        keep = (depth >= 1.0) & ~anat.ventricles_full(self.box)
        if region in CONVEXITY:
            keep &= depth < 20.0
        self.csf = (csf * keep).astype(np.float32)
        # Past the largest ball, blood distends the spaces: widen them into the adjacent tissue.
        self.gap = ndi.distance_transform_edt(self.csf < 0.5, sampling=self.grid.spacing_mm).astype(np.float32)
        self.keep, self.h = keep, float(self.grid.spacing_mm[1])
        self.info = {"region": region, "centre_mm": [round(float(v), 2) for v in self.c]}

    def fraction(self, s):
        g = min(s, MAX_SCALE) ** (1 / 3)
        f = self.csf
        if s > MAX_SCALE:
            widen = 2.0 * ((s / MAX_SCALE) ** (1 / 3) - 1.0) / 0.26  # mm; ~2 mm at twice the volume
            f = np.maximum(f, np.clip((widen - self.gap) / self.h + 0.5, 0, 1) * self.keep)
        return (f * np.clip((self.r0 * g - self.dist) / 2.0, 0.0, 1.0)).astype(np.float32)


class Intraventricular(Shape):
    """IVH: blood layering dependently (posterior, supine patient) in the ventricles' CSF; past a full
    cast the cast grows into the surrounding tissue (dilated ventricles)."""

    def __init__(self, anat: Anatomy, target_ml: float, side: int, shift):
        self.anat, self.grid = anat, anat.grid
        from .background import _COARSE
        idx = np.argwhere(anat.ventricles)
        lo, hi = idx.min(0) * _COARSE, (idx.max(0) + 1) * _COARSE
        margin = np.ceil(14.0 / np.asarray(self.grid.spacing_mm)).astype(int)
        self.box = tuple(slice(max(0, a - m), min(n, b + m))
                         for a, b, m, n in zip(lo, hi, margin, anat.cavity.shape))
        X, Y, Z = self.grid.world(self.box)
        hu = anat.volume.hu[self.box]
        vent = anat.ventricles_full(self.box) & anat.cavity[self.box]
        self.vent = (csf_fraction(smooth(hu, 0.5, self.grid.spacing_mm)) * vent).astype(np.float32)
        core = self.vent > 0.5
        self.outside = ndi.distance_transform_edt(~core, sampling=self.grid.spacing_mm).astype(np.float32)
        self.tissue = (depth_mm(anat, self.box) >= 3.0) & (hu <= BONE_HU)
        # Fluid level: horizontal in the room, head slightly turned, shifted by the shift's y.
        self.dep = (Y + 0.08 * (Z - anat.centre[2]) + 0.05 * side * (X - anat.centre[0])).astype(np.float32)
        self.dep = np.broadcast_to(self.dep, self.vent.shape)
        sel = self.dep[core] if core.any() else self.dep.ravel()
        self.y_lo, self.y_hi = float(sel.min()), float(sel.max())
        self.full_ml = float(self.vent.sum()) * float(np.prod(self.grid.spacing_mm)) / 1000
        self.q0 = target_ml / max(self.full_ml, 1e-3)
        self.h = float(self.grid.spacing_mm[1])
        self.info = {"region": "lateral", "ventricle_csf_ml": round(self.full_ml, 2)}

    def fraction(self, s):
        q = s * self.q0
        level = self.y_hi - min(q, 1.0) * (self.y_hi - self.y_lo + 2.0)
        f = self.vent * np.clip((self.dep - level) / self.h + 0.5, 0.0, 1.0)
        if q > 1.0:  # cast dilating the ventricles
            grow = (q - 1.0) * 6.0
            f = np.maximum(f, np.clip((grow - self.outside) / self.h + 0.5, 0, 1) * self.tissue)
        return f.astype(np.float32)
