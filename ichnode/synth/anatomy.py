"""Analytic head anatomy for the synthetic CT phantom.

Everything is defined as implicit functions of world (patient LPS) coordinates in mm: x to the
patient's left, y posterior, z superior; origin near the centre of the head. Because the shapes are
continuous, any sampling grid (thin, thick, tilted, coronal) can be rendered from the same head.

Functions take broadcastable float32 coordinate arrays X, Y, Z (an untilted axial grid gives
X (1,1,nx), Y (1,ny,1), Z (n,1,1)), so work is only done at full size where shapes need it.
"""
from __future__ import annotations

import numpy as np

from . import anatomy_details as _details

# Tissue labels; index into LUT_HU for the nominal (noise-free) Hounsfield value.
AIR, SCALP, BONE, DIPLOE, CSF, GM, WM, DURA, DEEP, STEM, CEREB, FAT, GLOBE, AIRCELL, BLOOD = range(15)
LABEL_NAMES = ("air", "scalp", "bone", "diploe", "csf", "grey", "white", "dura", "deep_grey",
               "brainstem", "cerebellum", "fat", "globe", "air_cells", "blood")
LUT_HU = np.array([-1000, 40, 1350, 750, 5, 38, 28, 45, 36, 31, 37, -90, 12, -550, 65], np.float32)
# Labels of anatomy_details (sinuses, calcifications, head holder) come after BLOOD.
LABEL_NAMES = LABEL_NAMES + _details.DETAIL_NAMES
LUT_HU = np.concatenate([LUT_HU, np.asarray(_details.DETAIL_HU, np.float32)])
BRAIN_LABELS = (GM, WM, DEEP, STEM, CEREB)
BONE_LABELS = (BONE, DIPLOE)

SCALP_MM = 5.0
CENTRE = np.array([0.0, 0.0, -10.0])  # centre of the outer head ellipsoid
Z_LOW, Z_HIGH = -55.0, 95.0  # scanned coverage: skull base to vertex (150 mm)


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def ellipsoid(X, Y, Z, c, a):
    """Inside test of an axis-aligned ellipsoid, centre c and semi-axes a (mm)."""
    c, a = [float(v) for v in c], [float(v) for v in a]  # python floats keep float32 arrays float32
    return ((X - c[0]) / a[0]) ** 2 + ((Y - c[1]) / a[1]) ** 2 + ((Z - c[2]) / a[2]) ** 2 < 1.0


class Anatomy:
    """One synthetic head. The seed varies head size and sulcal pattern slightly; vscale dilates
    the ventricles (used when intraventricular blood casts them)."""

    def __init__(self, seed: int = 0, vscale: float = 1.0, details: bool = True):
        rng = np.random.default_rng([int(seed), 101])
        self.seed, self.vscale = int(seed), float(vscale)
        self.semi = np.array([75.0, 92.5, 105.0]) * (1.0 + 0.03 * rng.uniform(-1, 1))
        # Sulci are the near-zero set of a smooth random field (sum of plane waves): sheets that
        # reach from the surface ~14 mm into the cortex, like gyri seen on axial CT.
        self.sulci = self._waves(rng, 8, 16.0, 22.0)
        self.folia = self._waves(rng, 4, 7.0, 9.0)
        # Sinuses, calcifications, holder, cupping and streaks (own random stream: the plain
        # head and the hemorrhage do not change with them). None: the plain phantom.
        self.details = _details.Details(self, self.seed) if details else None

    def with_vscale(self, vscale: float) -> "Anatomy":
        return Anatomy(self.seed, vscale, self.details is not None)

    @staticmethod
    def _waves(rng, n, lo, hi):
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        k = d * (2 * np.pi / rng.uniform(lo, hi, size=(n, 1)))
        return k.tolist(), rng.uniform(0, 2 * np.pi, n).tolist()

    @staticmethod
    def field(X, Y, Z, waves):
        k, ph = waves
        f = 0.0
        for (kx, ky, kz), p in zip(k, ph):
            f = f + np.sin(kx * X + ky * Y + (kz * Z + p))
        return f * float(np.sqrt(2.0 / len(ph)))  # ~unit variance

    # --- geometry helpers -------------------------------------------------------------------
    def head_box(self):
        return CENTRE - self.semi - 1.0, CENTRE + self.semi + 1.0

    def depth(self, X, Y, Z):
        """Radial depth (mm) below the outer skin surface; negative outside the head."""
        cx, cy, cz = (float(v) for v in CENTRE)
        qx, qy, qz = X - cx, Y - cy, Z - cz
        a = [float(v) for v in self.semi]
        r = np.sqrt((qx / a[0]) ** 2 + (qy / a[1]) ** 2 + (qz / a[2]) ** 2)
        q = np.sqrt(qx * qx + qy * qy + qz * qz)
        return q * (1.0 - r) / np.maximum(r, 1e-3)

    @staticmethod
    def bone_t(Z):
        """Skull thickness: 6.5 mm at the vault, thickening toward the skull base."""
        return 6.5 + 10.0 * np.clip((-25.0 - Z) / 25.0, 0.0, 1.0)

    @staticmethod
    def floor(X, Y):
        """Height of the cranial floor: anterior fossa (orbital roofs), deeper middle fossa with
        the sella in the midline, and the posterior fossa below the scanned range."""
        ax = np.abs(X)  # domed orbital roofs, lower cribriform plate; bowl-shaped middle fossa
        ant = (-26.0 + 9.0 * np.exp(-(((ax - 26.0) / 12.0) ** 2)) - 5.0 * _sig((10.0 - ax) / 3.0)
               - 0.12 * (Y + 20.0))
        mid = -48.0 + 0.008 * (ax - 38.0) ** 2 + 14.0 * _sig((20.0 - ax) / 3.0)
        fl = ant + (mid - ant) * _sig((Y + 20.0) / 4.0)
        return fl + (-80.0 - fl) * _sig((Y - 10.0) / 3.0)

    def inner(self, X, Y, Z):
        """(d_in, h): depth below the inner table, and depth below the nearest brain surface
        (inner table or cranial floor). Brain space is where both are >= 0."""
        d_in = self.depth(X, Y, Z) - SCALP_MM - self.bone_t(Z)
        return d_in, np.minimum(d_in, Z - self.floor(X, Y))

    @staticmethod
    def tentorium(X, Y):
        """Height of the tentorium: a tent sloping down posteriorly and laterally."""
        return -8.0 - 0.32 * np.maximum(Y - 15.0, 0.0) - 0.2 * np.abs(X)

    @classmethod
    def infratentorial(cls, X, Y, Z):
        """Below the tentorium and behind the clivus and petrous ridges."""
        return (Z < cls.tentorium(X, Y)) & (Y > 10.0) & (Y > -7.0 + 0.68 * np.abs(X))

    @staticmethod
    def fissure(X, Y, Z, half_width):
        """Interhemispheric fissure: midline, above and around the corpus callosum."""
        return (np.abs(X) < half_width) & (((Y - 2.0) / 40.0) ** 2 + ((Z - 6.0) / 18.0) ** 2 > 1.0)

    @staticmethod
    def stem(X, Y, Z, grow=0.0):
        return ((X / (13.0 + grow)) ** 2 + ((Y - 22.0) / (10.0 + grow)) ** 2 < 1.0) & (Z < -4.0)

    def ventricles(self, X, Y, Z, v=None):
        """Lateral ventricles (crescents: ellipsoid bodies indented by the caudate heads, plus
        trigones and temporal horns) and the third ventricle, dilated by v about their centre."""
        v = self.vscale if v is None else v
        c0 = np.array([0.0, 2.0, 12.0])

        def e(c, a):
            return ellipsoid(X, Y, Z, c0 + v * np.asarray(c), v * np.asarray(a))

        m = e((0, -2, -11), (2.5, 12, 7))  # third ventricle
        for s in (-1, 1):
            body = e((s * 9.5, 0, 2), (8, 30, 10)) & ~e((s * 17, -17, -2), (7, 10, 12))
            m = m | body | e((s * 15, 32, -4), (7, 14, 8)) | e((s * 28, -7, -30), (3, 10, 4))
        return m

    def ventricle_box(self, v=None):
        v = self.vscale if v is None else v
        c0 = np.array([0.0, 2.0, 12.0])
        return c0 + v * np.array([-32, -31, -35]) - 1, c0 + v * np.array([32, 47, 13]) + 1

    def csf_space(self, X, Y, Z, w=1.0, h=None, f=None, layer=True):
        """Non-ventricular CSF: surface layer (if layer), sulci, interhemispheric and Sylvian
        fissures, basal cisterns. w widens all of them (subarachnoid blood distends them)."""
        if h is None:
            h = self.inner(X, Y, Z)[1]
        f = self.field(X, Y, Z, self.sulci) if f is None else f
        supra = ~self.infratentorial(X, Y, Z)
        m = (np.abs(f) < 0.14 * w) & (h < 14.0) & supra
        if layer:
            m |= h < 1.5 * w
        m |= self.fissure(X, Y, Z, 2.0 * w) & supra
        sylvian = np.abs(Y + 6.0 - 0.45 * Z - 0.5 * (np.abs(X) - 28.0)) < 1.6 * w  # oblique, lateral
        m |= (np.abs(X) > 28.0) & sylvian & (np.abs(Z) < 14.0)
        m |= ellipsoid(X, Y, Z, (0, -2, -10), (14 * w, 9 * w, 5 * w))  # suprasellar cistern
        m |= self.stem(X, Y, Z, 3.0 * w) & ~self.stem(X, Y, Z)  # prepontine / ambient
        m |= ellipsoid(X, Y, Z, (0, 70, -48), (10 * w, 8 * w, 8 * w))  # cisterna magna
        return m & (h >= 0) & ~self.ventricles(X, Y, Z, 1.0)

    # --- rendering ---------------------------------------------------------------------------
    def labels(self, blk) -> np.ndarray:
        """Tissue labels (uint8) for the planes of a Block (see phantom.Block)."""
        return self.render(blk, field=False)[0]

    def render(self, blk, field: bool = True):
        """(labels, extra): tissue labels (uint8) for the planes of a Block and, if field and the
        details are on, the HU offsets of beam hardening (cupping under the inner table, streaks
        between the petrous bones), float32 of the same shape; else None."""
        lab = np.zeros(blk.shape, np.uint8)
        det = self.details
        extra = np.zeros(blk.shape, np.float32) if (field and det is not None) else None
        if det is not None:
            det.paint_holder(blk, lab, self._paint)
        sl = blk.box(*self.head_box())
        if sl is None:
            return lab, extra
        X, Y, Z = blk.cut(sl)
        view = lab[sl]
        d = self.depth(X, Y, Z)
        t = self.bone_t(Z)
        d_in = d - SCALP_MM - t
        above = Z - self.floor(X, Y)
        h = np.minimum(d_in, above)
        view[d >= 0] = SCALP
        view[(d >= SCALP_MM) & (d_in < 0)] = BONE
        view[(d >= SCALP_MM + 1.5) & (d_in < -1.5)] = DIPLOE  # cancellous core between the tables
        # Below the cranial floor: a bone plate, then soft tissue (orbits, face, infratemporal
        # fossa); the face has no calvarial shell. _base adds the sphenoid, sinuses and orbits.
        face = (above < -3.5) & (Y < -20.0)
        view[face & (Z < -28.0) & (d >= SCALP_MM)] = SCALP
        view[(d_in >= 0) & (above < 0)] = BONE
        view[(d_in >= 0) & (above < -3.5)] = SCALP
        view[face & (Z >= -28.0) & (d >= SCALP_MM)] = DIPLOE  # frontal bone above the orbits
        brain = h >= 0
        view[brain] = WM
        view[brain & (h < 4.5)] = GM  # cortical ribbon
        band = brain & (h < 16.0) & ~self.infratentorial(X, Y, Z)
        f = self.field(X, Y, Z, self.sulci)
        view[band & (np.abs(f) < 0.5)] = GM  # cortex lining the sulci
        view[brain & self.fissure(X, Y, Z, 5.5)] = GM  # medial cortex
        view[np.broadcast_to(self.csf_space(X, Y, Z, 1.0, h, f), view.shape)] = CSF
        view[brain & self.fissure(X, Y, Z, 0.6) & (h >= 1.5) & ~self.infratentorial(X, Y, Z)] = DURA  # falx
        if extra is not None:
            extra[sl] += np.broadcast_to(det.cupping(h), view.shape)
        self._deep(blk, lab)
        self._fossa(blk, lab)
        self._base(blk, lab)
        if det is not None:
            det.paint(blk, lab, self._paint)
            if extra is not None:
                ss = blk.box(*det.streak_box())
                if ss is not None:
                    Xs, Ys, Zs = blk.cut(ss)
                    hs = self.inner(Xs, Ys, Zs)[1]
                    extra[ss] += np.where(hs >= 0, det.streaks(Xs, Ys, Zs), np.float32(0))
        return lab, extra

    def _paint(self, blk, lab, lo, hi, fn, value, only=None):
        sl = blk.box(np.asarray(lo, float), np.asarray(hi, float))
        if sl is None:
            return
        view = lab[sl]
        m = np.broadcast_to(fn(*blk.cut(sl)), view.shape)
        if only is not None:
            m = m & np.isin(view, only)
        view[m] = value

    def _deep(self, blk, lab):
        for s in (-1, 1):  # lentiform nuclei, caudate heads, thalami
            for c, a in (((s * 23, -4, 3), (6, 13, 10)), ((s * 13, -18, 12), (5, 8, 8)),
                         ((s * 10, 12, 4), (8, 12, 8))):
                self._paint(blk, lab, np.subtract(c, a), np.add(c, a),
                            lambda X, Y, Z, c=c, a=a: ellipsoid(X, Y, Z, c, a), DEEP, (GM, WM))
        self._paint(blk, lab, *self.ventricle_box(), self.ventricles, CSF, BRAIN_LABELS + (CSF, DURA))

    def _fossa(self, blk, lab):
        brainish = BRAIN_LABELS + (CSF,)

        def cereb(X, Y, Z):  # cerebellar tissue: everything below the tentorium but the surface CSF
            return self.infratentorial(X, Y, Z) & (self.inner(X, Y, Z)[1] >= 1.5)

        box = ((-70, 10, -80), (70, 95, -8))
        self._paint(blk, lab, *box, cereb, CEREB, brainish)
        self._paint(blk, lab, *box, lambda X, Y, Z: cereb(X, Y, Z)
                    & (np.abs(self.field(X, Y, Z, self.folia)) < 0.09), CSF, (CEREB,))  # folia
        for s in (-1, 1):
            c, a = (s * 22, 45, -35), (10, 14, 9)
            self._paint(blk, lab, np.subtract(c, a), np.add(c, a),
                        lambda X, Y, Z, c=c, a=a: ellipsoid(X, Y, Z, c, a), WM, (CEREB, CSF))

        def tent(X, Y, Z):  # tentorium: a dural sheet with an incisura for the midbrain
            return ((np.abs(Z - self.tentorium(X, Y)) < 0.7) & (Y > -7.0 + 0.68 * np.abs(X))
                    & (Y > 10.0) & ((np.abs(X) > 14.0) | (Y > 36.0)))

        self._paint(blk, lab, (-70, 10, -45), (70, 95, -7), tent, DURA, brainish)
        self._paint(blk, lab, (-17, 8, -80), (17, 36, -4), lambda X, Y, Z: self.stem(X, Y, Z),
                    STEM, brainish)
        self._paint(blk, lab, (-7, 33, -43), (7, 43, -27),
                    lambda X, Y, Z: ellipsoid(X, Y, Z, (0, 38, -35), (6, 4, 7)), CSF, (STEM, CEREB, WM))

    def _base(self, blk, lab):
        soft = (SCALP, DIPLOE, BONE)
        self._paint(blk, lab, (-20, -30, -62), (20, 14, -29),  # sphenoid body and clivus
                    lambda X, Y, Z: ellipsoid(X, Y, Z, (0, -8, -46), (20, 22, 16)), DIPLOE, (SCALP,))
        for s in (-1, 1):  # petrous ridges, mastoid air cells, orbits with globes
            p0, p1 = np.array([s * 18, 5, -42.0]), np.array([s * 55, 30, -48.0])

            def ridge(X, Y, Z, p0=p0, p1=p1):
                u = p1 - p0
                (px, py, pz), (ux, uy, uz) = p0.tolist(), u.tolist()
                tt = np.clip(((X - px) * ux + (Y - py) * uy + (Z - pz) * uz) / float(u @ u), 0, 1)
                return ((X - px - tt * ux) ** 2 + (Y - py - tt * uy) ** 2 + (Z - pz - tt * uz) ** 2) < 64.0

            self._paint(blk, lab, np.minimum(p0, p1) - 8, np.maximum(p0, p1) + 8, ridge, BONE,
                        BRAIN_LABELS + (CSF, DURA, DIPLOE, SCALP))
            for c, a, v, only in (((s * 52, 28, -45), (10, 10, 9), AIRCELL, BONE_LABELS),
                                  ((s * 32, -64, -40), (16, 20, 13), FAT, (SCALP,)),
                                  ((s * 32, -70, -39), (11.5, 11.5, 11.5), GLOBE, (FAT,))):
                self._paint(blk, lab, np.subtract(c, a), np.add(c, a),
                            lambda X, Y, Z, c=c, a=a: ellipsoid(X, Y, Z, c, a), v, only)
        for c, a in (((0, -8, -44), (13, 11, 9)), ((0, -58, -40), (9, 20, 12)),  # sphenoid, ethmoid
                     ((0, -66, -60), (11, 22, 12)), ((0, -78, -18), (15, 7, 9))):  # nose, frontal
            self._paint(blk, lab, np.subtract(c, a), np.add(c, a),
                        lambda X, Y, Z, c=c, a=a: ellipsoid(X, Y, Z, c, a), AIR, soft)
