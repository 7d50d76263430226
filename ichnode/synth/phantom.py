"""Synthetic head CT phantom: sampling grid, rendering and hemorrhage truth.

The head (anatomy.py) and the hemorrhage (lesions.py) are continuous shapes in patient coordinates;
this module samples them on the voxel centres of the series that will be written (thin, thick,
gantry-tilted or coronal), so the truth mask is exactly the hemorrhage on the written grid.
Arrays are (z, y, x) as in ichnode.domain: z along the slice normal, increasing position.
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import BLOOD, LUT_HU, Z_HIGH, Z_LOW, Anatomy
from .lesions import make_lesion, solve_scale
from .uids import series_uids

SUBTYPES = ("iph", "ivh", "sah", "sdh", "edh", "none")
LOCATIONS = ("deep", "lobar", "infratentorial")
PAD_HU = -3024  # outside the reconstruction circle; stored -2000 with intercept -1024
NOISE_HU = 6.0
PSF_MM = 0.55  # in-plane blur (sigma): skull and skin edges as wide as on the real series (was 0.4)
SUB_MM = 1.25  # most spacing of the sub-planes that average a thick slice
_CHUNK_POINTS = 1_500_000  # bound on voxels evaluated at once (memory)


@dataclass(frozen=True)
class SynthSpec:
    subtype: str = "iph"  # "iph" | "ivh" | "sah" | "sdh" | "edh" | "none"
    volume_ml: float = 20.0  # target hemorrhage volume; the counted volume goes into the truth
    thickness_mm: float = 5.0  # slice thickness = spacing along the slice normal
    matrix: int = 512  # rows = columns
    fov_mm: float = 230.0  # pixel spacing = fov_mm / matrix
    tilt_deg: float = 0.0  # gantry tilt
    jpeg_lossless: bool = False  # JPEG Lossless SV1, else Explicit VR Little Endian
    seed: int = 0
    shape: str = "regular"  # "regular" | "irregular" (multi-lobed IPH)
    location: str = "lobar"  # IPH location: "deep" | "lobar" | "infratentorial"
    modality: str = "CT"  # may be wrong on purpose (eligibility tests)
    contrast: bool = False  # sets ContrastBolusAgent
    orientation: str = "axial"  # "axial" | "coronal"
    drop_slices: tuple[int, ...] = ()  # slice indices left out when writing
    study_uid: str | None = None  # deterministic from seed when None
    series_uid: str | None = None
    patient_name: str = "SYNTH^PHANTOM"
    patient_id: str = "SYNTH0001"

    def __post_init__(self):
        if self.subtype not in SUBTYPES:
            raise ValueError(f"subtype must be one of {SUBTYPES}, not {self.subtype!r}")
        if self.location not in LOCATIONS:
            raise ValueError(f"location must be one of {LOCATIONS}, not {self.location!r}")
        if self.shape not in ("regular", "irregular"):
            raise ValueError(f"shape must be 'regular' or 'irregular', not {self.shape!r}")
        if self.orientation not in ("axial", "coronal"):
            raise ValueError(f"orientation must be 'axial' or 'coronal', not {self.orientation!r}")
        if not (0 < self.thickness_mm <= 20 and 16 <= self.matrix <= 1024 and abs(self.tilt_deg) < 45):
            raise ValueError("thickness_mm, matrix or tilt_deg out of range")
        object.__setattr__(self, "drop_slices", tuple(sorted({int(i) for i in self.drop_slices})))


@dataclass(frozen=True, eq=False)
class Grid:
    """Voxel centres of a series: slice k, row i, column j lie at origin + k*step + i*dy*col + j*dx*row."""

    shape: tuple[int, int, int]
    origin: np.ndarray  # ImagePositionPatient of slice 0
    step: np.ndarray  # position difference between consecutive slices (table motion)
    row: np.ndarray  # direction of increasing column index (first half of ImageOrientationPatient)
    col: np.ndarray  # direction of increasing row index
    dx: float  # column spacing
    dy: float  # row spacing

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.col)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return (float(self.step @ self.normal), float(self.dy), float(self.dx))

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0

    @property
    def positions(self) -> np.ndarray:
        return self.origin + np.arange(self.shape[0])[:, None] * self.step

    def world(self, kij) -> np.ndarray:
        k, i, j = np.asarray(kij, float).T
        return (self.origin + np.outer(k, self.step) + np.outer(i * self.dy, self.col)
                + np.outer(j * self.dx, self.row))

    def blocks(self, offsets=(0.0,)):
        """Yield (k0, k1, Block) over chunks of slices; each slice sampled at the given offsets (mm)
        along the normal, planes ordered slice-major."""
        per = max(1, _CHUNK_POINTS // (self.shape[1] * self.shape[2] * len(offsets)))
        for k0 in range(0, self.shape[0], per):
            k1 = min(k0 + per, self.shape[0])
            ks = np.repeat(np.arange(k0, k1), len(offsets))
            offs = np.tile(np.asarray(offsets, float), k1 - k0)
            yield k0, k1, Block(self, self.origin + ks[:, None] * self.step + offs[:, None] * self.normal)


def make_grid(spec: SynthSpec) -> Grid:
    n, d = spec.matrix, spec.fov_mm / spec.matrix
    if spec.orientation == "coronal":
        row, col = np.array([1.0, 0, 0]), np.array([0, 0, -1.0])
        step = np.array([0, spec.thickness_mm, 0])
        lo, nz, centre = -100.0, int(math.ceil(200.0 / spec.thickness_mm - 1e-6)), np.array([0, 0, 20.0])
        centre = centre + (lo + 0.5 * spec.thickness_mm) * np.array([0, 1.0, 0])
    else:
        # Tilted gantry: columns tilt in the y-z plane while the table still moves along z, so
        # the position step is not parallel to the normal; step chosen for contiguous slices.
        t = math.radians(spec.tilt_deg)
        row, col = np.array([1.0, 0, 0]), np.array([0, math.cos(t), -math.sin(t)])
        dz = spec.thickness_mm / math.cos(t)
        reach = 85.0 * abs(math.tan(t))  # tilted planes must still cover the head
        lo, cover = Z_LOW - reach, Z_HIGH - Z_LOW + 2 * reach
        nz = int(math.ceil(cover / dz - 1e-6))
        step, centre = np.array([0, 0, dz]), np.array([0, 0, lo + 0.5 * dz])
    origin = centre - (n - 1) / 2.0 * d * (row + col)
    return Grid((nz, n, n), origin, step, row, col, d, d)


class Block:
    """Sampling planes (pixel (0,0) at base[p]) of one chunk, with coordinates built by
    broadcasting so axis-aligned coordinates stay 1-D until shapes combine them."""

    def __init__(self, grid: Grid, base: np.ndarray):
        self.grid, self.base = grid, base
        self.shape = (len(base), grid.shape[1], grid.shape[2])

    def box(self, lo, hi):
        """(planes, rows, columns) slices covering the world box [lo, hi], or None if disjoint."""
        g = self.grid
        corners = np.array(list(itertools.product(*zip(lo, hi))))
        rel = corners[None, :, :] - self.base[:, None, :]
        dn = rel @ g.normal
        hit = np.nonzero((dn.min(1) <= 1e-6) & (dn.max(1) >= -1e-6))[0]
        if hit.size == 0:
            return None
        r = rel[hit]
        i, j = r @ g.col / g.dy, r @ g.row / g.dx
        i0, i1 = max(0, math.floor(i.min())), min(self.shape[1], math.ceil(i.max()) + 1)
        j0, j1 = max(0, math.floor(j.min())), min(self.shape[2], math.ceil(j.max()) + 1)
        if i0 >= i1 or j0 >= j1:
            return None
        return slice(int(hit[0]), int(hit[-1]) + 1), slice(i0, i1), slice(j0, j1)

    def cut(self, sl):
        """Float32 world coordinates X, Y, Z (broadcastable) of the voxels in sl."""
        g = self.grid
        ii = (np.arange(sl[1].start, sl[1].stop) * g.dy).astype(np.float32)[None, :, None]
        jj = (np.arange(sl[2].start, sl[2].stop) * g.dx).astype(np.float32)[None, None, :]
        base = self.base[sl[0]]
        out = []
        for a in range(3):
            b = base[:, a]
            same = np.all(b == b[0])
            c = np.full((1, 1, 1), b[0], np.float32) if same else b.astype(np.float32)[:, None, None]
            if g.col[a] != 0:
                c = c + np.float32(g.col[a]) * ii
            if g.row[a] != 0:
                c = c + np.float32(g.row[a]) * jj
            out.append(c)
        return out


@dataclass(frozen=True, eq=False)
class Phantom:
    spec: SynthSpec
    hu: np.ndarray  # int16 (z, y, x), HU; PAD_HU outside the reconstruction circle
    mask: np.ndarray  # bool (z, y, x), hemorrhage at the voxel centres
    labels: np.ndarray  # uint8 (z, y, x), anatomy.LABEL_NAMES (blood where mask)
    grid: Grid
    blood_hu: float  # nominal hemorrhage attenuation before blur and noise
    lesion_info: dict

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.grid.spacing_mm

    @property
    def positions(self) -> np.ndarray:
        return self.grid.positions

    @property
    def orientation(self) -> tuple[float, ...]:
        return tuple(float(v) + 0.0 for v in np.concatenate([self.grid.row, self.grid.col]))  # no -0.0

    @property
    def voxel_count(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def volume_ml(self) -> float:
        return self.voxel_count * self.grid.voxel_ml

    def to_volume(self):
        """The phantom as an ichnode.domain.Volume without source headers (engine tests without
        DICOM); hu as the DICOM reader sees it (padding -3024), dropped slices included."""
        from ..domain import Volume

        study, series = series_uids(self.spec)
        return Volume(study, series, self.hu.astype(np.float32), self.spacing_mm, (), self.spec.tilt_deg)

    def truth(self) -> dict:
        """Hemorrhage ground truth; the writer adds UIDs and encoding."""
        s = self.spec
        t = {"subtype": s.subtype, "volume_ml": round(self.volume_ml, 4), "target_volume_ml": s.volume_ml,
             "voxel_count": self.voxel_count, "voxel_ml": self.grid.voxel_ml,
             "spacing_mm": [round(v, 6) for v in self.spacing_mm], "slices": int(self.hu.shape[0]),
             "matrix": s.matrix, "fov_mm": s.fov_mm, "thickness_mm": s.thickness_mm,
             "location": s.location if s.subtype == "iph" else None,
             "shape": s.shape if s.subtype == "iph" else None, "tilt_deg": s.tilt_deg,
             "orientation": s.orientation, "image_orientation": list(self.orientation),
             "table_step_mm": float(np.linalg.norm(self.grid.step)), "seed": s.seed,
             "blood_hu": round(self.blood_hu, 2), "dropped_slices": list(s.drop_slices),
             "centroid_mm": None, "bbox": None, **self.lesion_info}
        if self.voxel_count:
            idx = np.argwhere(self.mask)
            t["centroid_mm"] = [round(float(v), 3) for v in self.grid.world(idx.mean(0)[None])[0]]
            t["bbox"] = {a: [int(idx[:, n].min()), int(idx[:, n].max())] for n, a in enumerate("zyx")}
        return t


def _count(grid: Grid, lesion, s: float) -> int:
    lo, hi = lesion.box(s)
    n = 0
    for _, _, blk in grid.blocks():
        sl = blk.box(lo, hi)
        if sl is not None:
            m = lesion.mask(*blk.cut(sl), s)
            n += int(np.count_nonzero(np.broadcast_to(m, tuple(x.stop - x.start for x in sl))))
    return n


def _noise_gain(sigma_px: float) -> float:
    """Standard deviation of unit white noise after the noise-shaping Gaussian."""
    delta = np.zeros((33, 33))
    delta[16, 16] = 1.0
    return float(np.sqrt(np.sum(ndimage.gaussian_filter(delta, sigma_px) ** 2)))


def make_phantom(spec: SynthSpec, details: bool = True) -> Phantom:
    """Render the head and hemorrhage for spec on the grid of the series to be written
    (deterministic in spec; the hemorrhage scaled to spec.volume_ml within ~1.5%).

    details (default) adds what real head CT has and the plain head lacks (anatomy_details:
    dural sinuses, falx and tentorium density, physiological calcifications, the head holder,
    cupping under the inner table and streaks between the petrous bones); they are anatomy, so
    the hemorrhage, its mask and truth are the same with and without them."""
    grid = make_grid(spec)
    anat = Anatomy(spec.seed, details=details)
    lesion = make_lesion(spec, anat, np.random.default_rng([spec.seed, 7]))
    s, info, lut = 1.0, {}, LUT_HU.copy()
    if lesion is not None:
        s, got = solve_scale(lambda v: _count(grid, lesion, v) * grid.voxel_ml, spec.volume_ml)
        if spec.volume_ml >= 2 and abs(got / spec.volume_ml - 1) > 0.05:
            warnings.warn(f"synthetic {spec.subtype}: {got:.2f} mL instead of {spec.volume_ml} mL",
                          stacklevel=2)
        anat = anat.with_vscale(lesion.vscale(s))  # IVH casts dilate the ventricles
        info, lut[BLOOD] = dict(lesion.info, scale=round(s, 5)), lesion.blood_hu
    if anat.details is not None:
        anat.details.lut(lut)
    # Thick slices average the anatomy across their thickness (through-plane partial volume):
    # sub-planes at most SUB_MM apart (odd count, the middle one at the slice centre carries
    # the labels and truth), so bone enters the first and last slices of the vault.
    dn = grid.spacing_mm[0]
    nsub = 1 if dn < 1.5 else max(3, 2 * int(math.ceil((dn / SUB_MM - 1) / 2)) + 1)
    offsets = [((i + 0.5) / nsub - 0.5) * dn for i in range(nsub)]
    nz, ny, nx = grid.shape
    hu = np.empty(grid.shape, np.int16)
    labels = np.empty(grid.shape, np.uint8)
    psf_px = PSF_MM / grid.dx
    noise_px = 0.7
    gain = NOISE_HU / _noise_gain(noise_px)
    yy, xx = np.ogrid[:ny, :nx]
    outside = np.hypot((yy - (ny - 1) / 2) * grid.dy, (xx - (nx - 1) / 2) * grid.dx) > spec.fov_mm / 2
    for k0, k1, blk in grid.blocks(offsets):
        lab, extra = anat.render(blk)
        if lesion is not None:
            sl = blk.box(*lesion.box(s))
            if sl is not None:
                view = lab[sl]
                view[np.broadcast_to(lesion.mask(*blk.cut(sl), s), view.shape)] = BLOOD
        lab = lab.reshape(k1 - k0, nsub, ny, nx)
        labels[k0:k1] = lab[:, nsub // 2]
        img = lut[lab]
        if extra is not None:
            img += extra.reshape(lab.shape)
        img = img.reshape(k1 - k0, nsub, ny, nx).mean(axis=1)
        img = ndimage.gaussian_filter(img, (0, psf_px, psf_px), truncate=3.0)
        noise = np.stack([np.random.default_rng([spec.seed, 3, k]).standard_normal((ny, nx), np.float32)
                          for k in range(k0, k1)])
        img += gain * ndimage.gaussian_filter(noise, (0, noise_px, noise_px), truncate=3.0)
        np.clip(img, -1024, 3071, out=img)
        img[:, outside] = PAD_HU
        hu[k0:k1] = np.rint(img).astype(np.int16)
    return Phantom(spec, hu, labels == BLOOD, labels, grid, float(lut[BLOOD]), info)
