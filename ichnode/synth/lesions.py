"""Hemorrhage shapes for the synthetic head CT.

Each lesion is an implicit shape with one size parameter s (volume grows monotonically with s,
roughly proportionally), so the phantom can search s until the voxel-counted volume on the actual
sampling grid matches the requested volume.
"""
from __future__ import annotations

import math

import numpy as np

from .anatomy import CENTRE, SCALP_MM, Anatomy

# Nominal fresh-blood attenuation per subtype (HU); partial volume and noise come on top.
BLOOD_HU = {"iph": (62, 72), "ivh": (56, 64), "sah": (58, 68), "sdh": (60, 72), "edh": (64, 76)}
IPH_CENTRES = {"deep": (23.0, -3.0, 4.0), "lobar": (34.0, 10.0, 35.0), "infratentorial": (22.0, 50.0, -32.0)}


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _rotation(rng, yaw_deg, pitch_deg):
    a, b = np.radians(rng.uniform(-yaw_deg, yaw_deg)), np.radians(rng.uniform(-pitch_deg, pitch_deg))
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rz @ rx


class Lesion:
    subtype = ""

    def __init__(self, anat: Anatomy, rng: np.random.Generator):
        self.anat = anat
        self.side = int(rng.choice([-1, 1]))  # -1: patient right, +1: patient left
        self.blood_hu = float(rng.uniform(*BLOOD_HU[self.subtype]))
        self.info: dict = {"side": "left" if self.side > 0 else "right"}

    def vscale(self, s: float) -> float:
        return 1.0

    def box(self, s: float):
        raise NotImplementedError

    def mask(self, X, Y, Z, s: float):
        raise NotImplementedError


class IPH(Lesion):
    """Ellipsoid (regular) or union of overlapping ellipsoidal lobes (irregular) in parenchyma."""

    subtype = "iph"

    def __init__(self, anat, rng, target_ml, location, shape):
        super().__init__(anat, rng)
        c = np.array(IPH_CENTRES[location]) * (self.side, 1, 1) + rng.uniform(-2, 2, 3)
        self.location, self.info["location"] = location, location
        r0 = (3.0 * max(target_ml, 0.05) * 1000.0 / (4.0 * math.pi)) ** (1 / 3)
        ratio = np.array([1.0, 1.3, 0.85]) * rng.uniform(0.9, 1.1, 3)
        ratio /= np.prod(ratio) ** (1 / 3)
        rot = _rotation(rng, 30, 15)
        self.lobes = [(c, r0 * ratio, rot)]
        if shape == "irregular":  # smaller core with satellite lobes bulging out of it
            self.lobes = [(c, 0.75 * r0 * ratio, rot)]
            for _ in range(int(rng.integers(3, 6))):
                off = _unit(rng.normal(size=3) * (1, 1, 0.6)) * r0 * rng.uniform(0.8, 1.15)
                self.lobes.append((c + off, r0 * ratio * rng.uniform(0.4, 0.65, 3), _rotation(rng, 90, 45)))
        self.c = c

    def box(self, s):
        g = s ** (1 / 3)
        reach = max(np.linalg.norm(cl - self.c) + a.max() for cl, a, _ in self.lobes) * g + 1.0
        return self.c - reach, self.c + reach

    def mask(self, X, Y, Z, s):
        g = s ** (1 / 3)
        m = False
        for cl, a, rot in self.lobes:
            (cx, cy, cz), a, r = cl.tolist(), (a * g).tolist(), rot.tolist()
            dx, dy, dz = X - cx, Y - cy, Z - cz
            q = [r[0][i] * dx + r[1][i] * dy + r[2][i] * dz for i in range(3)]  # rot^T (p - c)
            m = m | ((q[0] / a[0]) ** 2 + (q[1] / a[1]) ** 2 + (q[2] / a[2]) ** 2 < 1.0)
        h = self.anat.inner(X, Y, Z)[1]
        infra = self.anat.infratentorial(X, Y, Z)
        # Clots stay in parenchyma: off the cortical surface, out of ventricles and the midline.
        ok = (h >= 2.0) & ~self.anat.ventricles(X, Y, Z, 1.0)
        ok &= infra if self.location == "infratentorial" else ~infra & (np.abs(X) > 2.5)
        return m & ok


class IVH(Lesion):
    """Blood layering dependently (posteriorly, supine patient) in the ventricles; beyond a full
    dependent fill the cast dilates the ventricles."""

    subtype = "ivh"

    def vscale(self, s):
        return max(s, 1.0) ** (1 / 3)

    def box(self, s):
        return self.anat.ventricle_box(self.vscale(s))

    def mask(self, X, Y, Z, s):
        v = self.vscale(s)
        level = 2.0 + v * (47.0 - 78.0 * 0.85 * min(s, 1.0))
        # The fluid level is horizontal in the room; the head is never exactly straight, so the
        # level is a few degrees off the image rows (this also avoids whole-row volume jumps).
        return self.anat.ventricles(X, Y, Z, v) & (Y + 0.14 * (Z - 12.0) + 0.07 * self.side * X > level)


class SAH(Lesion):
    """Blood in the subarachnoid spaces within a region: basal cisterns and Sylvian fissures
    (aneurysmal pattern) or convexity sulci. s enlarges the region and distends the spaces."""

    subtype = "sah"

    def __init__(self, anat, rng):
        super().__init__(anat, rng)
        self.pattern = str(rng.choice(["basal", "convexity"]))
        self.info["pattern"] = self.pattern
        if self.pattern == "basal":
            self.c, self.r0 = np.array([0.0, -4.0, -8.0]) + rng.uniform(-2, 2, 3), 38.0
        else:
            u = _unit((self.side, rng.uniform(-0.5, 0.2), 0.7))
            rho = 1.0 / np.sqrt(np.sum((u / anat.semi) ** 2)) - SCALP_MM - 6.5
            self.c, self.r0 = CENTRE + u * rho, 30.0

    def _g(self, s):
        return s ** (1 / 3)

    def box(self, s):
        r = self.r0 * self._g(s) + 1.0
        return self.c - r, self.c + r

    def mask(self, X, Y, Z, s):
        g = self._g(s)
        cx, cy, cz = self.c.tolist()
        ball = (X - cx) ** 2 + (Y - cy) ** 2 + (Z - cz) ** 2 < float(self.r0 * g) ** 2
        falx = self.anat.fissure(X, Y, Z, 0.6)
        # A layer right under the skull would be mostly bone partial volume at 5 mm; keep the
        # blood to cisterns, fissures and sulci, 1 mm clear of the inner table and floor.
        h = self.anat.inner(X, Y, Z)[1]
        space = self.anat.csf_space(X, Y, Z, float(np.clip(g, 0.5, 4.0)), h=h, layer=False)
        return ball & space & (h >= 1.0) & ~self.anat.stem(X, Y, Z) & ~falx


class Extra(Lesion):
    """Extra-axial collection against the inner table. SDH: crescent, thickness tapering slowly
    (1 - (a/a0)^2) over a wide convexity; EDH: biconvex lens (sqrt profile), compact."""

    def __init__(self, anat, rng, subtype):
        self.subtype = subtype
        super().__init__(anat, rng)
        if subtype == "sdh":
            self.u = _unit((self.side, rng.uniform(-0.3, 0.1), rng.uniform(0.25, 0.45)))
            self.t0, self.a0 = 8.0, 0.62
        else:
            self.u = _unit((self.side, rng.uniform(-0.15, 0.2), rng.uniform(0.0, 0.2)))
            self.t0, self.a0 = 11.0, 0.45

    def _params(self, s):
        g = s ** (1 / 3)
        return self.t0 * g, min(self.a0 * g, 1.45)

    def box(self, s):
        t, a0 = self._params(s)
        a, b = np.meshgrid(np.linspace(0, a0, 12), np.linspace(0, 2 * np.pi, 48, endpoint=False))
        e1 = _unit(np.cross(self.u, (0, 0, 1) if abs(self.u[2]) < 0.9 else (1, 0, 0)))
        e2 = np.cross(self.u, e1)
        v = (np.cos(a)[..., None] * self.u + np.sin(a)[..., None]
             * (np.cos(b)[..., None] * e1 + np.sin(b)[..., None] * e2)).reshape(-1, 3)
        rho = 1.0 / np.sqrt(np.sum((v / self.anat.semi) ** 2, axis=1, keepdims=True))
        pts = np.concatenate([CENTRE + v * rho, CENTRE + v * (rho - SCALP_MM - 17.0 - t - 2.0)])
        return pts.min(0) - 3.0, pts.max(0) + 3.0

    def mask(self, X, Y, Z, s):
        t, a0 = self._params(s)
        (cx, cy, cz), (ux, uy, uz) = CENTRE.tolist(), self.u.tolist()
        qx, qy, qz = X - cx, Y - cy, Z - cz
        cosang = (qx * ux + qy * uy + qz * uz) / np.maximum(np.sqrt(qx * qx + qy * qy + qz * qz), 1e-3)
        rho = np.clip(1.0 - (np.arccos(np.clip(cosang, -1.0, 1.0)) / float(a0)) ** 2, 0.0, None)
        prof = float(t) * (rho if self.subtype == "sdh" else np.sqrt(rho))
        d_in, h = self.anat.inner(X, Y, Z)
        m = (d_in >= 0) & (h >= 0) & (d_in < prof)
        if self.subtype == "sdh":  # subdural blood is held by the falx and tentorium
            m &= (X * self.side > 1.0) & ~self.anat.infratentorial(X, Y, Z)
        return m


def make_lesion(spec, anat: Anatomy, rng: np.random.Generator) -> Lesion | None:
    if spec.subtype == "none" or spec.volume_ml <= 0:
        return None
    if spec.subtype == "iph":
        return IPH(anat, rng, spec.volume_ml, spec.location, spec.shape)
    if spec.subtype == "ivh":
        return IVH(anat, rng)
    if spec.subtype == "sah":
        return SAH(anat, rng)
    return Extra(anat, rng, spec.subtype)


def solve_scale(volume_of, target_ml: float, tol: float = 0.015, max_iter: int = 24) -> tuple[float, float]:
    """Find s with volume_of(s) ~= target; returns (s, volume). Volume is monotone in s and
    roughly proportional, so proportional steps converge in a few iterations; a bracket guards
    against overshoot."""
    s, lo, hi = 1.0, None, None
    best = (math.inf, s, 0.0)
    for _ in range(max_iter):
        v = volume_of(s)
        err = abs(v - target_ml) / target_ml
        best = min(best, (err, s, v))
        if err <= tol:
            break
        if v < target_ml:
            lo = (s, v)
        else:
            hi = (s, v)
        if lo and hi:
            if lo[1] > 0:  # interpolate in log-log between the bracket ends
                f = math.log(target_ml / lo[1]) / math.log(hi[1] / lo[1])
                s = math.exp(math.log(lo[0]) + min(max(f, 0.1), 0.9) * math.log(hi[0] / lo[0]))
            else:
                s = math.sqrt(lo[0] * hi[0])
        else:
            s *= min(max(target_ml / v, 0.2), 5.0) if v > 0 else 4.0
    return best[1], best[2]
