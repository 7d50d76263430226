"""What the plain analytic head lacks and real head CT has, with figures from a real series.

Measured on /work/shared/data/cq500-ct0 (CQ500, 238 slices of 0.625 mm, 0.443 mm pixels,
contrast-enhanced), see docs/models/real-ct.md "Phantoms made from real statistics":

* the intracranial soft tissue next to the inner table reads higher (beam hardening / cupping):
  +9 to +13 HU at 2-3 mm below the table, +6 at 6-8 mm, +3 at 10-12 mm over the deep value;
* the head holder: side arms of a dense shell (peak 315-367 HU, 1.3-2.9 mm thick, 22-35 mm
  lateral of the scalp) and, under the occiput, a pad/base reading -390 to -715 HU;
* in the posterior fossa between the petrous bones the tissue reads ~8-10 HU lower than the
  posterior cerebellum (the beam-hardening "Hounsfield bar");
* the superior sagittal sinus posteriorly ~9 mm wide and ~6 mm deep (triangular).

Densities of blood-filled and calcified structures cannot come from an enhanced series; they
are non-contrast literature values: dural sinuses and venous blood 45-60 HU, dura (falx,
tentorium) 40-55 HU, physiological calcifications 100-400 HU.

Everything is seeded by the phantom's seed (its own random stream, so the plain anatomy and the
hemorrhage are unchanged) and is anatomy, never blood: the lesion is painted over it.
"""
from __future__ import annotations

import math

import numpy as np

# New tissue labels (anatomy.py appends them after BLOOD so older label values keep their meaning).
SINUS, CALC, PLAQUE, HOLDER, CUSHION = range(15, 20)
DETAIL_NAMES = ("sinus", "calcification", "dural_plaque", "holder", "holder_pad")
DETAIL_HU = (52.0, 250.0, 450.0, 350.0, -550.0)  # nominal; each phantom draws its own (lut())

_SOFT = (4, 5, 6, 7, 8, 9, 10)  # CSF, GM, WM, DURA, DEEP, STEM, CEREB: what sinuses may replace


def _segment_mask(X, Y, Z, p0, p1, r0, r1):
    """Inside a tapered capsule from p0 (radius r0) to p1 (radius r1)."""
    (ax, ay, az), (ux, uy, uz) = p0.tolist(), (p1 - p0).tolist()
    uu = float((p1 - p0) @ (p1 - p0))
    t = np.clip(((X - ax) * ux + (Y - ay) * uy + (Z - az) * uz) / uu, 0.0, 1.0)
    d2 = (X - ax - t * ux) ** 2 + (Y - ay - t * uy) ** 2 + (Z - az - t * uz) ** 2
    r = float(r0) + (float(r1) - float(r0)) * t
    return d2 < r * r


def _ellipsoid(X, Y, Z, c, a):
    c, a = [float(v) for v in c], [float(v) for v in a]
    return ((X - c[0]) / a[0]) ** 2 + ((Y - c[1]) / a[1]) ** 2 + ((Z - c[2]) / a[2]) ** 2 < 1.0


class Details:
    """Sinuses, dura, calcifications, the head holder (labels) and the cupping and skull-base
    streak fields (HU offsets) of one phantom."""

    def __init__(self, anat, seed: int):
        self.anat = anat
        rng = np.random.default_rng([int(seed), 211])
        u = rng.uniform
        # Densities (HU): literature for non-contrast CT (the real series is enhanced).
        self.sinus_hu = u(45.0, 60.0)
        self.dura_hu = u(42.0, 52.0)  # falx and tentorium
        self.calc_hu = u(150.0, 350.0)
        self.plaque_hu = u(300.0, 700.0)
        # Measured on the real series: holder shell peak 315-367 HU, pad -390..-715 HU.
        self.holder_hu = u(330.0, 390.0)  # nominal: the PSF lowers a ~2 mm shell's peak a little
        self.cushion_hu = u(-650.0, -450.0)
        # Cupping: excess A * exp(-h / lam) below the inner table (measured profile, see module doc).
        self.cup_amp, self.cup_len = u(7.0, 11.0), u(6.0, 9.0)
        # Sinus sizes (mm); SSS posterior ~9 x 6 mm measured, transverse often right-dominant.
        self.sss_scale = u(0.85, 1.15)
        self.ts_radius = {-1: u(3.0, 4.5), 1: u(2.5, 4.0)}
        self.ss_radius = u(2.0, 3.0)
        # Calcifications: seeded presence (adult prevalences: pineal and glomus common, basal
        # ganglia and falx uncommon) and size.
        self.pineal = bool(u() < 0.7)
        self.pineal_d = u(3.0, 7.0)
        self.pineal_off = rng.normal(0, 0.8, 3)
        self.glomus = {s: (bool(u() < 0.7), u(3.0, 8.0), rng.normal(0, 1.5, 3)) for s in (-1, 1)}
        self.basal = bool(u() < 0.15)
        self.basal_d = u(1.5, 3.0)
        self.falx_plaque = bool(u() < 0.3)
        self.plaque_c = np.array([0.0, u(-30.0, 25.0), u(25.0, 45.0)])
        self.plaque_a = np.array([0.9, u(2.5, 6.0), u(1.5, 3.5)])
        # Head holder: circle about the table axis; side arms and a posterior pad.
        ax, ay = float(anat.semi[0]), float(anat.semi[1])
        gap_l, gap_p = u(22.0, 34.0), u(8.0, 16.0)
        self.holder_r = ax + gap_l
        self.holder_yc = ay + gap_p - self.holder_r
        self.holder_t = u(1.8, 2.6)
        self.holder_arm = (u(-30.0, -10.0), u(45.0, 55.0))  # degrees from lateral, + posterior
        self.pad_t = u(6.0, 10.0)
        # Posterior fossa streaks: dark band between the petrous bones, thin streaks fanning out.
        self.streak_z = u(-48.0, -40.0)
        self.streak_zs = u(5.0, 8.0)
        self.bands = [(u(-1, 1), u(-1, 1), u(2.5, 5.0), -u(6.0, 14.0)) for _ in range(int(rng.integers(2, 4)))]
        self.rays = [(int(rng.choice([-1, 1])), u(0, 1), math.radians(u(60, 120)), u(0.7, 1.5),
                      float(rng.choice([-1, 1])) * u(4.0, 9.0)) for _ in range(int(rng.integers(2, 5)))]
        self._lines = None

    # --- HU of the new labels ----------------------------------------------------------------
    def lut(self, lut: np.ndarray) -> None:
        from .anatomy import DURA

        lut[DURA] = self.dura_hu
        # The literature densities are read on images that carry cupping; the sinuses lie at the
        # inner table where cupping adds most, so their nominal value leaves room for it.
        cup = self.cup_amp * math.exp(-2.5 / self.cup_len)
        lut[SINUS], lut[CALC], lut[PLAQUE] = self.sinus_hu - cup, self.calc_hu, self.plaque_hu
        lut[HOLDER], lut[CUSHION] = self.holder_hu, self.cushion_hu

    # --- sinus centrelines --------------------------------------------------------------------
    def _table(self, origin, direction, inset):
        """Point along the ray from origin where the depth below the inner table falls to inset."""
        from .anatomy import SCALP_MM

        a = self.anat
        r = np.arange(0.0, 140.0, 0.25, dtype=np.float32)
        p = np.asarray(origin, np.float32)[None] + r[:, None] * np.asarray(direction, np.float32)[None]
        d_in = a.depth(p[:, 0], p[:, 1], p[:, 2]) - SCALP_MM - a.bone_t(p[:, 2])
        k = int(np.argmax(d_in < inset)) if np.any(d_in < inset) else len(r) - 1
        return p[max(k - 1, 0)].astype(float)

    def lines(self):
        """Tubes (p0, p1, r0, r1) of the transverse, sigmoid and straight sinuses and torcula."""
        if self._lines is not None:
            return self._lines
        a, out = self.anat, []
        for s in (-1, 1):
            r = self.ts_radius[s]
            pts = []
            for phi in np.linspace(90.0, 18.0, 10):  # along the occipital table, posterior to lateral
                d = (s * math.cos(math.radians(phi)), math.sin(math.radians(phi)), 0.0)
                z = -30.0
                for _ in range(2):  # at the tentorium's attachment
                    p = self._table((0.0, 20.0, z), d, 0.5 * r)
                    z = float(a.tentorium(p[0], p[1])) - 0.3 * r
                pts.append(self._table((0.0, 20.0, z), d, 0.5 * r))
            last = pts[-1]
            for f in np.linspace(0.2, 1.0, 5):  # sigmoid: down and forward toward the jugular foramen
                z = float(last[2]) + f * (-62.0 - float(last[2]))
                phi = math.radians(18.0 - 10.0 * f)
                pts.append(self._table((0.0, 20.0 - 6.0 * f, z), (s * math.cos(phi), math.sin(phi), 0.0), 0.5 * r))
            rs = [r] * 10 + [r - f * (r - 0.8 * r) for f in np.linspace(0.2, 1.0, 5)]
            out += [(pts[i], pts[i + 1], rs[i], rs[i + 1]) for i in range(len(pts) - 1)]
        torcula = self._table((0.0, 20.0, -30.0), (0.0, 1.0, 0.0), 2.0)
        torcula[2] = float(a.tentorium(0.0, torcula[1])) - 1.0
        self.torcula = torcula
        r = self.ss_radius  # straight sinus along the falx-tentorium junction, from the Galenic vein
        galen = np.array([0.0, 34.0, float(a.tentorium(0.0, 34.0)) + r + 3.0])
        mid = np.array([0.0, 0.5 * (34.0 + torcula[1]), 0.0])
        mid[2] = float(a.tentorium(0.0, mid[1])) + r
        out += [(galen, mid, r, r), (mid, torcula, r, r), (torcula, torcula + (0, 0, 0.01), 5.0, 5.0)]
        self._lines = out
        return out

    def _sss(self, X, Y, Z):
        """Superior sagittal sinus: triangular in section, base on the inner table at the
        midline, growing from the frontal end to the torcula."""
        a = self.anat
        d_in = a.inner(X, Y, Z)[0]
        cz = -10.0
        theta = np.degrees(np.arctan2(Y, Z - cz))  # 0 at the vertex, + posterior
        t = np.clip((theta + 95.0) / 200.0, 0.0, 1.0)
        half = self.sss_scale * (1.5 + 3.3 * t)  # half base: 1.5 -> 4.8 mm
        height = self.sss_scale * (2.5 + 4.0 * t)  # 2.5 -> 6.5 mm
        post_end = Z > a.tentorium(X, Y) - 2.0
        return ((theta > -95.0) & (d_in >= 0) & (d_in < height)
                & (np.abs(X) < half * (1.0 - d_in / height)) & post_end)

    # --- labels ------------------------------------------------------------------------------
    def paint(self, blk, lab, paint):
        """Add the details to the labels of a Block (paint: Anatomy._paint)."""
        from .anatomy import CSF, DEEP, DURA, GM, WM

        a = self.anat
        v = a.vscale
        c0 = np.array([0.0, 2.0, 12.0])
        # Dural venous sinuses (non-contrast blood density).
        top = float(-10.0 + a.semi[2] + 1.0)
        paint(blk, lab, (-8, -100, -40), (8, 100, top), self._sss, SINUS, _SOFT)
        for p0, p1, r0, r1 in self.lines():
            m = max(r0, r1) + 0.5
            paint(blk, lab, np.minimum(p0, p1) - m, np.maximum(p0, p1) + m,
                  lambda X, Y, Z, p0=p0, p1=p1, r0=r0, r1=r1: _segment_mask(X, Y, Z, p0, p1, r0, r1),
                  SINUS, _SOFT)
        # Physiological calcifications.
        if self.pineal:
            c = c0 + v * np.array([0.0, 13.5, -10.0]) + self.pineal_off
            h = self.pineal_d / 2.0 * np.array([0.9, 1.1, 0.9])
            paint(blk, lab, c - h - 1, c + h + 1, lambda X, Y, Z: _ellipsoid(X, Y, Z, c, h), CALC,
                  (CSF, GM, WM, DEEP, DURA))
        for s in (-1, 1):
            present, d, off = self.glomus[s]
            if present:  # glomus of the choroid plexus, in the atrium
                c = c0 + v * np.array([s * 15.0, 30.0, -4.0]) + off
                h = d / 2.0 * np.array([0.8, 1.2, 0.8])
                paint(blk, lab, c - h - 1, c + h + 1,
                      lambda X, Y, Z, c=c, h=h: _ellipsoid(X, Y, Z, c, h), CALC, (CSF,))
            if self.basal:  # globus pallidus specks, symmetric
                c = np.array([s * 18.0, -3.0, 2.0])
                h = np.full(3, self.basal_d / 2.0)
                paint(blk, lab, c - h - 1, c + h + 1,
                      lambda X, Y, Z, c=c, h=h: _ellipsoid(X, Y, Z, c, h), CALC, (DEEP, GM, WM))
        if self.falx_plaque:
            c, h = self.plaque_c, self.plaque_a
            paint(blk, lab, c - h - 1, c + h + 1, lambda X, Y, Z: _ellipsoid(X, Y, Z, c, h), PLAQUE,
                  (DURA, GM, CSF))

    def paint_holder(self, blk, lab, paint):
        """The head holder: a shell about the table axis behind and beside the head, outside it."""
        from .anatomy import AIR

        r, yc, t = self.holder_r, self.holder_yc, self.holder_t
        lo_a, hi_a = self.holder_arm

        def polar(X, Y):
            rho = np.sqrt(X * X + (Y - yc) ** 2)
            ang = np.degrees(np.arctan2(Y - yc, np.abs(X)))  # 0 lateral, 90 posterior
            return rho, ang

        def shell(X, Y, Z):
            rho, ang = polar(X, Y)
            return (rho >= r) & (rho < r + t) & (ang >= lo_a) & (ang <= hi_a)

        def pad(X, Y, Z):
            rho, ang = polar(X, Y)
            return (rho >= r) & (rho < r + self.pad_t) & (ang > hi_a - 5.0)

        zlo, zhi = -200.0, 200.0
        box_lo = (-r - self.pad_t - 1, yc + (r + t) * math.sin(math.radians(lo_a)) - 1, zlo)
        paint(blk, lab, box_lo, (r + self.pad_t + 1, yc + r + self.pad_t + 1, zhi), shell, HOLDER, (AIR,))
        paint(blk, lab, box_lo, (r + self.pad_t + 1, yc + r + self.pad_t + 1, zhi), pad, CUSHION, (AIR,))

    # --- HU offset fields ----------------------------------------------------------------------
    def cupping(self, h):
        """Beam-hardening excess (HU) at depth h (mm) below the inner table or cranial floor."""
        return np.where(h >= 0, np.float32(self.cup_amp) * np.exp(-np.maximum(h, 0) / np.float32(self.cup_len)),
                        np.float32(0.0)).astype(np.float32)

    def streak_box(self):
        z0 = self.streak_z
        return np.array([-70.0, -15.0, z0 - 3 * self.streak_zs]), np.array([70.0, 95.0, z0 + 3 * self.streak_zs])

    def streaks(self, X, Y, Z):
        """Beam-hardening streaks (HU) between the petrous bones, strongest at their level."""
        env = np.exp(-(((Z - np.float32(self.streak_z)) / np.float32(self.streak_zs)) ** 2))
        f = np.float32(0.0)
        for ul, ur, w, amp in self.bands:  # dark bands joining points on both petrous ridges
            pl = np.array([-18.0, 5.0]) + (0.2 + 0.6 * (ul + 1) / 2) * np.array([-37.0, 25.0])
            pr = np.array([18.0, 5.0]) + (0.2 + 0.6 * (ur + 1) / 2) * np.array([37.0, 25.0])
            d = pr - pl
            n = np.array([-d[1], d[0]]) / np.linalg.norm(d)
            dist = (X - float(pl[0])) * float(n[0]) + (Y - float(pl[1])) * float(n[1])
            inside = np.abs(X) < float(max(abs(pl[0]), abs(pr[0])))
            f = f + np.float32(amp) * np.exp(-((dist / np.float32(w)) ** 2)) * inside
        for s, uu, ang, w, amp in self.rays:  # thin streaks fanning back from a petrous ridge
            p = np.array([s * 18.0, 5.0]) + (0.2 + 0.6 * uu) * np.array([s * 37.0, 25.0])
            dvec = np.array([-s * math.cos(ang), math.sin(ang)])
            rx, ry = X - float(p[0]), Y - float(p[1])
            along = rx * float(dvec[0]) + ry * float(dvec[1])
            across = rx * float(-dvec[1]) + ry * float(dvec[0])
            f = f + (np.float32(amp) * np.exp(-((across / np.float32(w)) ** 2))
                     * np.exp(-np.maximum(along, 0) / np.float32(45.0)) * (along > 0))
        return (f * env).astype(np.float32)
