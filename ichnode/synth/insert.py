"""Synthetic hemorrhage inserted into a real head CT series: real anatomy, exact truth.

Order of operations (make_case): background (optionally enhancement removed, background.py) ->
lesion blood fraction per voxel at the thin series' own resolution (insert_shapes.py), scaled to the
requested volume -> optional mass effect (smooth radial warp of the surrounding anatomy) ->
new_hu = bg + f * (blood_hu - local_mean(bg)), so the background's own noise texture stays inside the
blood -> optional left-right mirror -> optional thick-slab reformat (image and truth fraction alike, so
partial volume at the reformatted thickness is real). Truth volume = sum(f) * voxel volume, exactly.
Everything here is in memory; insert_writer.py writes a case to disk.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..domain import Volume
from .background import Anatomy, VoxelGrid, find_cranium, mirror, reformat_thick, remove_enhancement
from .insert_shapes import ExtraAxial, Intraventricular, Parenchymal, Subarachnoid
from .lesions import BLOOD_HU, solve_scale

SUBTYPES = ("iph", "ivh", "sah", "sdh", "edh", "none")
LABELS = {"iph": 1, "ivh": 2, "sah": 3, "sdh": 4, "edh": 5}  # order of ichnode.domain.SUBTYPES
IPH_LOCATIONS = ("deep", "lobar", "infratentorial")
REGIONS = {"sdh": ("frontal", "parietal", "temporal"), "edh": ("frontal", "parietal", "temporal"),
           "sah": ("frontal", "parietal", "temporal", "sylvian", "basal"), "ivh": ("lateral",)}
LOCAL_MEAN_MM = 1.0  # scale of "what the blood replaces" (local mean of the background)
HETEROGENEITY_HU = 2.0  # sd of the smooth internal variation of the clot
MASS_EFFECT_GAIN = 0.6  # share of the lesion's radius by which its neighbourhood is pushed away


@dataclass(frozen=True)
class InsertSpec:
    subtype: str = "iph"  # iph | ivh | sah | sdh | edh | none
    volume_ml: float = 15.0  # 1..80
    shape: str = "regular"  # regular | irregular (IPH lobulated)
    location: str | None = None  # IPH: deep | lobar | infratentorial; else region (REGIONS); None: by seed
    side: str | None = None  # left | right; None: by seed
    seed: int = 0
    mass_effect: bool = False
    thickness_mm: float | None = None  # None: the background's own slices; else thick-slab reformat
    mirror: bool = False  # flip the finished case left-right
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # patient LPS mm added to the location
    remove_contrast: bool = True  # bring enhanced vessels/sinuses to non-contrast density first
    blood_hu: float | None = None  # None: drawn from lesions.BLOOD_HU[subtype] by seed

    def __post_init__(self):
        if self.subtype not in SUBTYPES:
            raise ValueError(f"subtype must be one of {SUBTYPES}, not {self.subtype!r}")
        if self.subtype != "none" and not 1.0 <= self.volume_ml <= 80.0:
            raise ValueError("volume_ml must be between 1 and 80")
        if self.shape not in ("regular", "irregular"):
            raise ValueError("shape must be regular or irregular")
        if self.side not in (None, "left", "right"):
            raise ValueError("side must be left or right")
        allowed = IPH_LOCATIONS if self.subtype == "iph" else REGIONS.get(self.subtype, ())
        if self.location is not None and self.subtype != "none" and self.location not in allowed:
            raise ValueError(f"{self.subtype} location must be one of {allowed}, not {self.location!r}")
        if self.thickness_mm is not None and not 0 < self.thickness_mm <= 20:
            raise ValueError("thickness_mm must be in (0, 20]")
        object.__setattr__(self, "shift_mm", tuple(float(v) for v in self.shift_mm))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True, eq=False)
class Background:
    """A loaded background, prepared once and reused across cases."""

    volume: Volume  # as inserted into: enhancement removed when remove_contrast
    anatomy: Anatomy
    contrast_removed: bool
    source_series_uid: str


@dataclass(frozen=True, eq=False)
class InsertedCase:
    spec: InsertSpec
    volume: Volume  # hu with the lesion, on the case's grid (reformatted / mirrored)
    fraction: np.ndarray  # float32 (z, y, x) blood fraction per voxel
    truth: dict

    @property
    def labels(self) -> np.ndarray:
        """uint8 label volume: LABELS[subtype] where the blood fraction is at least one half."""
        lab = np.zeros(self.fraction.shape, np.uint8)
        if self.spec.subtype in LABELS:
            lab[self.fraction >= 0.5] = LABELS[self.spec.subtype]
        return lab


def load_background_volume(dicom_dir: Path | str) -> Volume:
    """The largest series of a folder as a Volume (other studies' stray files are left out)."""
    from collections import Counter

    from ..assemble.series import Headers, load_volume, read_headers, stack_geometry

    paths = sorted(p for p in Path(dicom_dir).rglob("*") if p.is_file() and not p.name.startswith("."))
    headers = read_headers(paths)
    if not headers.datasets:
        raise ValueError(f"no readable DICOM file in {dicom_dir}")
    biggest = Counter(str(ds.SeriesInstanceUID) for ds in headers.datasets).most_common(1)[0][0]
    keep = [n for n, ds in enumerate(headers.datasets) if str(ds.SeriesInstanceUID) == biggest]
    headers = Headers(tuple(headers.datasets[n] for n in keep), tuple(headers.paths[n] for n in keep), ())
    return load_volume(headers, stack_geometry(headers, gap_tolerance=0.5))


def prepare_background(volume: Volume, remove_contrast: bool = True) -> Background:
    """Find the cranium on the series as acquired, remove enhancement (default), then the anatomy."""
    cranium = find_cranium(volume.hu, volume.spacing_mm)
    anatomy_src = Anatomy(volume, cranium)
    hub = anatomy_src.vessel_hub  # found on the enhanced series, where the circle of Willis shows
    prepared = remove_enhancement(volume, cranium) if remove_contrast else volume
    anatomy = Anatomy(prepared, cranium) if remove_contrast else anatomy_src
    anatomy.__dict__["vessel_hub"] = hub
    return Background(prepared, anatomy, remove_contrast, volume.series_uid)


def _choose(spec: InsertSpec, rng: np.random.Generator) -> tuple[str, int]:
    side = spec.side or str(rng.choice(["left", "right"]))
    options = IPH_LOCATIONS if spec.subtype == "iph" else REGIONS[spec.subtype]
    location = spec.location or str(rng.choice(options))
    return location, side


def make_shape(bg: Background, spec: InsertSpec, location: str, side: int, rng):
    if spec.subtype == "iph":
        return Parenchymal(bg.anatomy, rng, spec.volume_ml, location, side, spec.shape, spec.shift_mm)
    if spec.subtype in ("sdh", "edh"):
        return ExtraAxial(bg.anatomy, spec.subtype, location, side, spec.shift_mm)
    if spec.subtype == "sah":
        return Subarachnoid(bg.anatomy, location, side, spec.shift_mm)
    return Intraventricular(bg.anatomy, spec.volume_ml, side, spec.shift_mm)


def solve_fraction(shape, target_ml: float, voxel_ml: float) -> tuple[float, np.ndarray]:
    """Scale the shape to target_ml (within ~1.5%); IPH first on centre samples (cheap), then refined
    on supersampled fractions."""
    def total(f) -> float:
        return float(f.sum()) * voxel_ml

    s = 1.0
    if hasattr(shape, "coarse_fraction"):
        s, _ = solve_scale(lambda v: total(shape.coarse_fraction(v)), target_ml, tol=0.01, max_iter=16)
        frac = shape.fraction(s)
        got = total(frac)
        if abs(got / target_ml - 1) <= 0.015 or got <= 0:
            return s, frac
        s0 = s * target_ml / got
        s, _ = solve_scale(lambda v: total(shape.fraction(v * s0)), target_ml, max_iter=8)
        s *= s0
    elif hasattr(shape, "total"):
        s, _ = solve_scale(lambda v: shape.total(v) * voxel_ml, target_ml)
    else:
        s, _ = solve_scale(lambda v: total(shape.fraction(v)), target_ml)
    return s, shape.fraction(s)


def _blood_field(shape, blood_hu: float, seed: int, spacing) -> np.ndarray:
    """Clot density with mild smooth internal variation (sd ~2 HU)."""
    noise = np.random.default_rng([seed, 11]).standard_normal(shape).astype(np.float32)
    field = ndi.gaussian_filter(noise, [2.0 / d for d in spacing], truncate=2.5)
    sd = float(field.std()) or 1.0
    return blood_hu + HETEROGENEITY_HU * field / sd


def apply_blood(hu: np.ndarray, frac: np.ndarray, blood_hu: np.ndarray, spacing) -> np.ndarray:
    """new = bg + f * (blood - m), m the local mean of the tissue the blood replaces (weights f, bone
    and air left out), so the background's noise (bg - m) stays in the blood."""
    weight = frac * ((hu > -50) & (hu < 150))
    sigma = [LOCAL_MEAN_MM / d for d in spacing]
    num = ndi.gaussian_filter(weight * hu, sigma, truncate=3.0)
    den = ndi.gaussian_filter(weight, sigma, truncate=3.0)
    soft = np.clip(hu, -50, 100)
    fallback = ndi.gaussian_filter(soft, sigma, truncate=3.0)
    local = np.where(den > 0.05, num / np.maximum(den, 1e-6), fallback)
    return (hu + frac * (blood_hu - local)).astype(np.float32)


def mass_effect(hu: np.ndarray, frac: np.ndarray, depth: np.ndarray, spacing, radius_mm: float) -> np.ndarray:
    """Push the anatomy around the lesion away from its centroid: radial displacement
    gain * r^3 / d^2 (volume-like fall-off), capped, tapered to zero near the inner table and outside
    the cavity. Resampled linearly (the box only)."""
    if not frac.any():
        return hu
    c = np.array(ndi.center_of_mass(frac))
    grids = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in hu.shape), indexing="ij", sparse=True)
    rel = [(g - ci) * d for g, ci, d in zip(grids, c, spacing)]
    dist = np.sqrt(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2) + 1e-3
    r = radius_mm
    mag = np.minimum(MASS_EFFECT_GAIN * r ** 3 / np.maximum(dist, r) ** 2, 0.6 * dist)
    mag *= np.clip(depth / 8.0, 0.0, 1.0)
    coords = [g - m * rr / dist / d for g, rr, d, m in zip(grids, rel, spacing, [mag] * 3)]
    return ndi.map_coordinates(hu, np.broadcast_arrays(*coords), order=1, mode="nearest").astype(np.float32)


def insert_hemorrhage(bg: Background, spec: InsertSpec) -> InsertedCase:
    """Insert the lesion of spec at the background's own resolution (no mirror, no reformat)."""
    vol = bg.volume
    rng = np.random.default_rng([spec.seed, 5])
    frac = np.zeros(vol.hu.shape, np.float32)
    truth = {"subtype": spec.subtype, "target_volume_ml": spec.volume_ml if spec.subtype != "none" else 0.0}
    hu = vol.hu
    if spec.subtype != "none":
        location, side_name = _choose(spec, rng)
        side = 1 if side_name == "left" else -1
        shape = make_shape(bg, spec, location, side, rng)
        s, local = solve_fraction(shape, spec.volume_ml, vol.voxel_ml)
        got = float(local.sum()) * vol.voxel_ml
        if abs(got / spec.volume_ml - 1) > 0.02:
            warnings.warn(f"inserted {spec.subtype}: {got:.2f} mL instead of {spec.volume_ml} mL", stacklevel=2)
        blood_hu = spec.blood_hu if spec.blood_hu is not None else float(rng.uniform(*BLOOD_HU[spec.subtype]))
        box = _padded(shape.box, local, vol.spacing_mm, vol.hu.shape)
        f = _paste(local, shape.box, box)
        hu = vol.hu.copy()
        region = hu[box]
        if spec.mass_effect:
            from .insert_shapes import depth_mm
            r = (3 * got * 1000 / (4 * np.pi)) ** (1 / 3)
            region = mass_effect(region, f, depth_mm(bg.anatomy, box), vol.spacing_mm, r)
        field = _blood_field(f.shape, blood_hu, spec.seed, vol.spacing_mm)
        hu[box] = apply_blood(region, f, field, vol.spacing_mm)
        frac[box] = f
        truth.update(location=location, side=side_name, blood_hu=round(blood_hu, 2), scale=round(s, 5),
                     **shape.info)
    return InsertedCase(spec, replace(vol, hu=hu), frac, truth)


def _padded(box, frac, spacing, shape, pad_mm: float = 4.0):
    """Bounding box of the nonzero fraction inside box, widened by pad_mm."""
    nz = np.nonzero(frac.any(axis=(1, 2)))[0], np.nonzero(frac.any(axis=(0, 2)))[0], np.nonzero(frac.any(axis=(0, 1)))[0]
    if any(len(a) == 0 for a in nz):
        return box
    out = []
    for a, b, d, n in zip(nz, box, spacing, shape):
        p = int(np.ceil(pad_mm / d))
        out.append(slice(max(0, b.start + a[0] - p), min(n, b.start + a[-1] + 1 + p)))
    return tuple(out)


def _paste(values: np.ndarray, src_box, dst_box) -> np.ndarray:
    """values (on src_box) on dst_box, zero where src_box does not reach."""
    out = np.zeros(tuple(b.stop - b.start for b in dst_box), values.dtype)
    inter = [slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(src_box, dst_box)]
    src = tuple(slice(i.start - a.start, i.stop - a.start) for i, a in zip(inter, src_box))
    dst = tuple(slice(i.start - b.start, i.stop - b.start) for i, b in zip(inter, dst_box))
    out[dst] = values[src]
    return out


def make_case(bg: Background, spec: InsertSpec) -> InsertedCase:
    """The full case of spec: insert, mirror, reformat; truth record on the final grid."""
    if bg.contrast_removed != spec.remove_contrast:
        raise ValueError("background prepared with remove_contrast="
                         f"{bg.contrast_removed}, spec asks {spec.remove_contrast}")
    case = insert_hemorrhage(bg, spec)
    vol, frac = case.volume, case.fraction
    if spec.mirror:
        vol, frac = mirror(vol), np.ascontiguousarray(frac[:, :, ::-1])
        if "side" in case.truth:
            case.truth["side"] = {"left": "right", "right": "left"}[case.truth["side"]]
    if spec.thickness_mm is not None:
        vol, frac = reformat_thick(vol, spec.thickness_mm, frac)
    truth = dict(case.truth, **_truth_figures(vol, frac), spec=asdict(spec),
                 contrast_removed=bg.contrast_removed, background_series_uid=bg.source_series_uid,
                 mirrored=spec.mirror, shift_mm=list(spec.shift_mm), mass_effect=spec.mass_effect,
                 thickness_mm=float(vol.spacing_mm[0]) if spec.thickness_mm else None, seed=spec.seed,
                 shape=spec.shape if spec.subtype == "iph" else None)
    return InsertedCase(spec, vol, frac, truth)


def _truth_figures(vol: Volume, frac: np.ndarray) -> dict:
    voxel_ml = vol.voxel_ml
    total = float(frac.sum(dtype=np.float64)) * voxel_ml
    out = {"volume_ml": round(total, 4), "label_volume_ml": round(float((frac >= 0.5).sum()) * voxel_ml, 4),
           "voxel_ml": voxel_ml, "spacing_mm": [round(float(v), 6) for v in vol.spacing_mm],
           "slices": int(vol.hu.shape[0]), "centroid_mm": None, "bbox": None}
    if total > 0:
        grid = VoxelGrid.of(vol)
        c = np.array(ndi.center_of_mass(frac))
        out["centroid_mm"] = [round(float(v), 3) for v in grid.point_of(c)] if vol.datasets else None
        idx = [np.nonzero(frac.any(axis=a))[0] for a in ((1, 2), (0, 2), (0, 1))]
        out["bbox"] = {n: [int(a[0]), int(a[-1])] for n, a in zip("zyx", idx)}
    return out


__all__ = ["Background", "InsertSpec", "InsertedCase", "LABELS", "load_background_volume", "make_case",
           "insert_hemorrhage", "prepare_background", "remove_enhancement"]
