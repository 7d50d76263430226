"""Real-anatomy training slices for the 2D classifiers (seeds 001, 003, 004), and training / evaluation on them.

Why: the 2D networks were trained on 150 windowed PNGs only and do not fire on real 512 x 512 HU slices with
blood. Here synthetic hemorrhage is inserted into the real CQ500-CT-0 series (``ichnode.synth.insert``,
exact truth per voxel) and axial slices are cut from the cases.

Data generator (:func:`generate`):

* **Cases**: :func:`case_specs` draws one :class:`InsertSpec` per seed - subtype cycling through
  iph/ivh/sah/sdh/edh, volume log-uniform in [2, 60] mL, IPH location and shape, side (by seed), mirror
  (p = 0.5), shift up to +-8 mm per axis, 5 mm slabs except every ``native_every``-th case (native
  0.625 mm slices, ~4x dearer). Training seeds start at :data:`TRAIN_SEED0` (1000), held-out evaluation
  seeds at :data:`EVAL_SEED0` (2000); neither overlaps the benchmarks' 0-4 / 100-104 / 200-204 / 300-304.
* **Positive slice**: inserted blood area ``sum(fraction) * pixel area`` >= ``pos_area_mm2``
  (:data:`POS_AREA_MM2` = 25 mm^2, i.e. a 5.6 mm square of pure blood). Slices with some blood but less
  are dropped (ambiguous), not called negative.
* **Negative slice**: slices of a case at least :data:`NEG_GAP_MM` (10 mm) from any inserted blood, and
  slices of the lesion-free de-enhanced background itself (5 mm slabs, and every 8th native slice, each
  also mirrored).
* Only slices with at least :data:`MIN_TISSUE_MM2` of soft tissue (0..80 HU) are used: the vertex's and
  the skull base's lowest slices, which show (almost) no brain, are left out of both classes.
* **Paired negatives** (``paired_negatives``): for each positive slice, the lesion-free background slice
  at the same z (same mirror, same slab thickness) as a negative, so that the anatomical level of a slice
  (most lesions sit supratentorially) cannot stand in for the blood. Added after the first run showed that
  shortcut (docs/models/real-anatomy-2d.md).
* Per case at most ``max_per_case`` positives and as many negatives (spread evenly along z).
* Slices are stored in HU (int16), area-downsampled to :data:`STORE_SIZE` (256) px, with their pixel
  spacing, in one ``.npz`` cache (under ``var/``, not in git).

Augmentation (:func:`augment_hu`, in HU, before the registry's ``hu_to_input``): rotation +-10 deg, gantry
tilt (in-plane foreshortening along y by cos(0..15 deg)), head size/field of view 0.9..1.1, head position
shift +-15 mm, scanner calibration (gain 0.97..1.03, offset +-4 HU), and Gaussian noise of SD 0..8 HU. Each
real-anatomy training slice enters ``copies`` times, each copy with its own seeded draw (fixed, so a resumed
run sees the same data); the training loop's own flip + rotation then applies per epoch as for the PNGs.

Training reuses :func:`ichnode.training.classify.fit` (same loop, recipe and checkpoint/resume): the
real-anatomy slices are appended to the head-ct-png training images.

    python -m ichnode.training.real_anatomy generate --out var/real2d/train.npz --seeds 1000:1040
    python -m ichnode.training.real_anatomy crossval resnet50_cls --real var/real2d/train.npz --out var/real2d/cv
    python -m ichnode.training.real_anatomy train resnet50_cls --real var/real2d/train.npz --out var/real2d/final
    python -m ichnode.training.real_anatomy evaluate resnet50_cls --weights var/real2d/final \\
        --heldout var/real2d/eval.npz --out var/real2d/eval.json
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from ichnode.models.registry import ModelSpec, get
from ichnode.training.classify import fit, predict, save_weights, write_sidecar
from ichnode.training.loop import default_device, print_line
from ichnode.training.crossval import stratified_folds
from ichnode.training.metrics import classification_metrics
from ichnode.training.png_dataset import PngSet, load_png_set

REPO = Path(__file__).resolve().parents[2]
CQ500 = REPO.parent / "shared" / "data" / "cq500-ct0"
HEAD_CT_PNG = REPO.parent / "shared" / "data" / "head-ct-png"

TRAIN_SEED0 = 1000
EVAL_SEED0 = 2000
BENCHMARK_SEEDS = frozenset([*range(0, 5), *range(100, 105), *range(200, 205), *range(300, 305)])
SUBTYPES = ("iph", "ivh", "sah", "sdh", "edh")
POS_AREA_MM2 = 25.0
NEG_GAP_MM = 10.0
MIN_TISSUE_MM2 = 2500.0
STORE_SIZE = 256
AIR_HU = -1000.0


# ------------------------------------------------------------------------------------------ cases
def case_specs(seeds, native_every: int = 4):
    """One InsertSpec per seed (see the module docstring); refuses the benchmarks' evaluation seeds."""
    from ichnode.synth.insert import IPH_LOCATIONS, InsertSpec

    specs = []
    for seed in seeds:
        if seed in BENCHMARK_SEEDS:
            raise ValueError(f"seed {seed} is a benchmark evaluation seed; use 1000+ / 2000+")
        rng = np.random.default_rng([seed, 31])
        subtype = SUBTYPES[seed % len(SUBTYPES)]
        volume = float(np.round(math.exp(rng.uniform(math.log(2.0), math.log(60.0))), 1))
        extra: dict[str, Any] = {}
        if subtype == "iph":
            extra = {"location": IPH_LOCATIONS[int(rng.integers(3))],
                     "shape": "irregular" if rng.random() < 0.5 else "regular"}
        else:
            rng.integers(3), rng.random()  # keep the draws aligned across subtypes
        mirror = bool(rng.random() < 0.5)
        shift = tuple(float(v) for v in np.round(rng.uniform(-8, 8, 3), 1))
        thickness = None if native_every and seed % native_every == native_every - 1 else 5.0
        specs.append(InsertSpec(subtype=subtype, volume_ml=volume, seed=int(seed), mirror=mirror,
                                shift_mm=shift, thickness_mm=thickness, **extra))
    return specs


# ---------------------------------------------------------------------------------------- slices
def blood_area_mm2(fraction: np.ndarray, spacing_mm) -> np.ndarray:
    """Per axial slice: inserted blood area in mm^2 (blood fraction summed, times the pixel area)."""
    return np.asarray(fraction, np.float64).sum(axis=(1, 2)) * float(spacing_mm[1]) * float(spacing_mm[2])


def tissue_area_mm2(hu: np.ndarray, spacing_mm) -> np.ndarray:
    """Per axial slice: area of soft tissue (0..80 HU) in mm^2."""
    return ((hu > 0) & (hu < 80)).sum(axis=(1, 2)) * float(spacing_mm[1]) * float(spacing_mm[2])


def select_slices(hu: np.ndarray, fraction: np.ndarray | None, spacing_mm, *,
                  pos_area_mm2: float = POS_AREA_MM2, neg_gap_mm: float = NEG_GAP_MM,
                  min_tissue_mm2: float = MIN_TISSUE_MM2) -> tuple[np.ndarray, np.ndarray]:
    """(positive slice indices, negative slice indices) of one volume (see the module docstring)."""
    n = hu.shape[0]
    brain = tissue_area_mm2(hu, spacing_mm) >= min_tissue_mm2
    if fraction is None:
        return np.zeros(0, np.int64), np.flatnonzero(brain)
    area = blood_area_mm2(fraction, spacing_mm)
    pos = np.flatnonzero(brain & (area >= pos_area_mm2))
    bleeding = np.flatnonzero(area > 0)
    if bleeding.size:
        z = np.arange(n)[:, None]
        dist_mm = np.abs(z - bleeding[None, :]).min(axis=1) * float(spacing_mm[0])
        far = dist_mm >= neg_gap_mm
    else:
        far = np.ones(n, bool)
    neg = np.flatnonzero(brain & far)
    return pos, neg


def spread_evenly(idx: np.ndarray, k: int) -> np.ndarray:
    """At most k indices, evenly spread over idx."""
    if k <= 0 or idx.size <= k:
        return idx if k > 0 else idx[:0]
    return idx[np.unique(np.linspace(0, idx.size - 1, k).round().astype(int))]


def shrink(slices: np.ndarray, size: int = STORE_SIZE) -> tuple[np.ndarray, float]:
    """(n, h, w) HU -> (n, size, size) by air padding to a square and area averaging; and the zoom factor
    (new pixel = old pixel * factor)."""
    slices = np.asarray(slices, np.float32)
    n, h, w = slices.shape
    s = max(h, w)
    if h != w:
        sq = np.full((n, s, s), AIR_HU, np.float32)
        sq[:, (s - h) // 2:(s - h) // 2 + h, (s - w) // 2:(s - w) // 2 + w] = slices
        slices = sq
    if s == size:
        return slices, 1.0
    t = torch.from_numpy(np.ascontiguousarray(slices))[:, None]
    mode = "area" if s > size else "bilinear"
    out = F.interpolate(t, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    return out[:, 0].numpy(), s / size


@dataclass
class SliceBank:
    """HU slices (n, S, S) float32, labels (n,), pixel spacing (n,) mm, blood area (n,) mm^2, ids."""

    hu: np.ndarray
    labels: np.ndarray
    pixel_mm: np.ndarray
    area_mm2: np.ndarray
    ids: list[str]
    meta: dict

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx) -> "SliceBank":
        idx = np.asarray(idx, np.int64)
        return SliceBank(self.hu[idx], self.labels[idx], self.pixel_mm[idx], self.area_mm2[idx],
                         [self.ids[i] for i in idx], self.meta)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, hu=np.clip(np.rint(self.hu), -1024, 3071).astype(np.int16),
                            labels=self.labels.astype(np.int64), pixel_mm=self.pixel_mm.astype(np.float32),
                            area_mm2=self.area_mm2.astype(np.float32), ids=np.asarray(self.ids),
                            meta=np.asarray(json.dumps(self.meta)))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SliceBank":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["hu"].astype(np.float32), z["labels"], z["pixel_mm"], z["area_mm2"],
                       [str(v) for v in z["ids"]], json.loads(str(z["meta"])))

    @staticmethod
    def concat(banks: list["SliceBank"], meta: dict) -> "SliceBank":
        return SliceBank(np.concatenate([b.hu for b in banks]), np.concatenate([b.labels for b in banks]),
                         np.concatenate([b.pixel_mm for b in banks]), np.concatenate([b.area_mm2 for b in banks]),
                         [i for b in banks for i in b.ids], meta)


def bank_from_volume(hu: np.ndarray, fraction: np.ndarray | None, spacing_mm, name: str, *,
                     max_per_case: int = 8, size: int = STORE_SIZE, **select) -> SliceBank:
    """Positives and negatives of one volume (at most max_per_case of each), shrunk to size px."""
    pos, neg = select_slices(hu, fraction, spacing_mm, **select)
    pos, neg = spread_evenly(pos, max_per_case), spread_evenly(neg, max_per_case)
    idx = np.concatenate([pos, neg]).astype(np.int64)
    labels = np.concatenate([np.ones(pos.size, np.int64), np.zeros(neg.size, np.int64)])
    area = (blood_area_mm2(fraction, spacing_mm)[idx] if fraction is not None else np.zeros(idx.size))
    small, factor = shrink(hu[idx], size) if idx.size else (np.zeros((0, size, size), np.float32), 1.0)
    px = float(spacing_mm[2]) * factor
    return SliceBank(small, labels, np.full(idx.size, px, np.float32), area.astype(np.float32),
                     [f"{name}/z{int(z):03d}" for z in idx], {})


def background_banks(bg, *, native_step: int = 8, size: int = STORE_SIZE, **select) -> list[SliceBank]:
    """Negatives of the lesion-free (de-enhanced) background: 5 mm slabs and every native_step-th native
    slice, each as acquired and mirrored."""
    from ichnode.synth.background import mirror, reformat_thick

    vol = bg.volume
    slab = reformat_thick(vol, 5.0)[0]
    out = []
    for name, v in (("bg-native", vol), ("bg-5mm", slab)):
        for m in (False, True):
            vv = mirror(v) if m else v
            hu = vv.hu[::native_step] if name == "bg-native" else vv.hu
            sp = (vv.spacing_mm[0] * (native_step if name == "bg-native" else 1), *vv.spacing_mm[1:])
            out.append(bank_from_volume(hu, None, sp, f"{name}{'-m' if m else ''}", max_per_case=10 ** 6,
                                        size=size, **select))
    return out


def generate(seeds, out: str | Path, *, data_dir: str | Path = CQ500, native_every: int = 4,
             max_per_case: int = 8, with_background: bool = True, size: int = STORE_SIZE,
             background=None, paired_negatives: bool = False, log=print_line) -> SliceBank:
    """Insert one lesion per seed into the real background, cut slices, cache them in ``out`` (.npz)."""
    from ichnode.synth.insert import load_background_volume, make_case, prepare_background

    t0 = time.monotonic()
    bg = background if background is not None else prepare_background(load_background_volume(data_dir))
    log(f"background ready in {time.monotonic() - t0:.0f} s ({bg.volume.hu.shape})")
    banks = background_banks(bg, size=size) if with_background else []
    cases = []
    plain: dict = {}  # (mirror, thickness) -> the lesion-free background on that grid
    for spec in case_specs(seeds, native_every):
        tc = time.monotonic()
        case = make_case(bg, spec)
        name = (f"s{spec.seed}-{spec.subtype}-{spec.volume_ml:g}ml"
                f"-{'native' if spec.thickness_mm is None else '5mm'}")
        b = bank_from_volume(case.volume.hu, case.fraction, case.volume.spacing_mm, name,
                             max_per_case=max_per_case, size=size)
        banks.append(b)
        if paired_negatives and b.labels.any():
            key = (spec.mirror, spec.thickness_mm)
            if key not in plain:
                plain[key] = make_case(bg, replace(spec, subtype="none", shift_mm=(0.0, 0.0, 0.0))).volume
            zs = [int(i.rsplit("/z", 1)[1]) for i, y in zip(b.ids, b.labels) if y == 1]
            pv = plain[key]
            small, factor = shrink(pv.hu[zs], size)
            banks.append(SliceBank(small, np.zeros(len(zs), np.int64),
                                   np.full(len(zs), float(pv.spacing_mm[2]) * factor, np.float32),
                                   np.zeros(len(zs), np.float32), [f"{name}-pair/z{z:03d}" for z in zs], {}))
        cases.append({**asdict(spec), "n_pos": int(b.labels.sum()), "n_neg": int((b.labels == 0).sum()),
                      "volume_ml_truth": case.truth["volume_ml"], "seconds": round(time.monotonic() - tc, 1)})
        log(f"case {spec.seed} {spec.subtype} {spec.volume_ml:g} mL "
            f"{'native' if spec.thickness_mm is None else '5 mm'}: {int(b.labels.sum())} pos, "
            f"{int((b.labels == 0).sum())} neg, {time.monotonic() - tc:.0f} s")
    meta = {"seeds": [int(s) for s in seeds], "cases": cases, "pos_area_mm2": POS_AREA_MM2,
            "neg_gap_mm": NEG_GAP_MM, "min_tissue_mm2": MIN_TISSUE_MM2, "store_size": size,
            "background": str(data_dir), "background_series_uid": bg.source_series_uid,
            "with_background_negatives": with_background, "paired_negatives": paired_negatives, "seconds": round(time.monotonic() - t0, 1)}
    bank = SliceBank.concat(banks, meta)
    bank.save(out)
    log(f"{len(bank)} slices ({int(bank.labels.sum())} positive) -> {out} in {time.monotonic() - t0:.0f} s")
    return bank


# ---------------------------------------------------------------------------------- augmentation
def augment_hu(hu: np.ndarray, pixel_mm: float, rng: np.random.Generator) -> np.ndarray:
    """One seeded scanner/position variation of one HU slice (see the module docstring)."""
    n = hu.shape[0]
    angle = math.radians(rng.uniform(-10, 10))
    tilt = math.cos(math.radians(rng.uniform(0, 15)))
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-15, 15, 2) / pixel_mm
    c, s = math.cos(angle), math.sin(angle)
    # output -> input coordinates (y, x): inverse of scale * diag(tilt, 1) * rotation
    fwd = scale * np.array([[tilt, 0.0], [0.0, 1.0]]) @ np.array([[c, -s], [s, c]])
    inv = np.linalg.inv(fwd)
    centre = np.array([(n - 1) / 2, (hu.shape[1] - 1) / 2])
    offset = centre - inv @ (centre + shift)
    out = ndi.affine_transform(hu, inv, offset=offset, order=1, mode="constant", cval=AIR_HU)
    gain, bias = rng.uniform(0.97, 1.03), rng.uniform(-4, 4)
    out = np.where(out > AIR_HU + 1, out * gain + bias, out)
    out = out + rng.normal(0, rng.uniform(0, 8), out.shape)
    return out.astype(np.float32)


def bank_inputs(spec: ModelSpec, bank: SliceBank, image_size: int, *, copies: int = 0, seed: int = 0,
                chunk: int = 64) -> PngSet:
    """The network inputs of a bank: as stored (copies = 0) or ``copies`` augmented variants per slice."""
    hus, ids, labels = [], [], []
    if copies == 0:
        hus, ids, labels = [bank.hu], list(bank.ids), [bank.labels]
    else:
        for c in range(copies):
            rng = np.random.default_rng([seed, c, 77])
            hus.append(np.stack([augment_hu(h, float(p), rng) for h, p in zip(bank.hu, bank.pixel_mm)]))
            ids += [f"{i}#a{c}" for i in bank.ids]
            labels.append(bank.labels)
    hu = np.concatenate(hus) if hus else np.zeros((0, STORE_SIZE, STORE_SIZE), np.float32)
    arrays = [spec.input.hu_to_input(hu[i:i + chunk], (image_size, image_size)).array
              for i in range(0, len(hu), chunk)]
    x = np.concatenate(arrays).astype(np.float32) if arrays else np.zeros((0,), np.float32)
    return PngSet(ids, x, np.concatenate(labels).astype(np.int64), spec.name, image_size)


def join(a: PngSet, b: PngSet) -> PngSet:
    if a.image_size != b.image_size or a.model != b.model:
        raise ValueError("sets prepared for different models / sizes")
    return PngSet(a.ids + b.ids, np.concatenate([a.inputs, b.inputs]), np.concatenate([a.labels, b.labels]),
                  a.model, a.image_size)


# ---------------------------------------------------------------------------------------- figures
def wilson(k: int, n: int) -> dict:
    from ichnode.validate.stats import wilson_interval

    ci = wilson_interval(int(k), int(n))
    return {"k": int(k), "n": int(n), "p": (k / n) if n else None,
            "ci95": [round(ci[0], 4), round(ci[1], 4)] if ci else None}


def choose_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """Threshold maximising balanced accuracy (ties: the one closest to 0.5)."""
    labels, probs = np.asarray(labels), np.asarray(probs)
    cands = np.unique(np.concatenate([probs, [0.5]]))
    best, best_t = -1.0, 0.5
    for t in cands:
        pred = probs >= t
        tpr = pred[labels == 1].mean() if (labels == 1).any() else 0.0
        tnr = (~pred[labels == 0]).mean() if (labels == 0).any() else 0.0
        ba = (tpr + tnr) / 2
        if ba > best + 1e-12 or (abs(ba - best) <= 1e-12 and abs(t - 0.5) < abs(best_t - 0.5)):
            best, best_t = ba, float(t)
    return best_t


def score_set(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    from ichnode.validate.stats import delong_auc

    labels, probs = np.asarray(labels), np.asarray(probs)
    pred = probs >= threshold
    pos, neg = labels == 1, labels == 0
    out = {"n": int(labels.size), "n_pos": int(pos.sum()), "n_neg": int(neg.sum()),
           "accuracy": wilson(int((pred == pos).sum()), labels.size),
           "sensitivity": wilson(int(pred[pos].sum()), int(pos.sum())),
           "specificity": wilson(int((~pred[neg]).sum()), int(neg.sum())),
           "prob_pos_mean": float(probs[pos].mean()) if pos.any() else None,
           "prob_pos_median": float(np.median(probs[pos])) if pos.any() else None,
           "prob_neg_mean": float(probs[neg].mean()) if neg.any() else None,
           "prob_neg_median": float(np.median(probs[neg])) if neg.any() else None}
    if pos.any() and neg.any():
        out["auc"] = delong_auc(labels, probs).as_dict()
    return out


# -------------------------------------------------------------------------------------- training
@dataclass
class RunConfig:
    model: str = "resnet50_cls"
    image_size: int = 128
    epochs: int = 30
    small: bool = True
    overrides: dict | None = None
    copies: int = 1
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _fit(cfg: RunConfig, train: PngSet, work: Path, tag: str, log):
    spec = get(cfg.model)
    return fit(spec, train, epochs=cfg.epochs, checkpoint_dir=work, small=cfg.small, seed=cfg.seed,
               resume=True, device=default_device(), log=log, tag=tag, config_overrides=cfg.overrides)


def crossvalidate(cfg: RunConfig, real: SliceBank, out: str | Path, *, data_dir: str | Path = HEAD_CT_PNG,
                  folds: int = 5, heldout: SliceBank | None = None, command: str | None = None,
                  log=print_line) -> dict:
    """head-ct-png k-fold CV (crossval.stratified_folds, split seed 0) with the real-anatomy slices added
    to every fold's training part; the PNG test fold is never trained on. Threshold 0.5 on the folds."""
    spec = get(cfg.model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    png = load_png_set(data_dir, spec, cfg.image_size)
    real_set = bank_inputs(spec, real, cfg.image_size, copies=cfg.copies, seed=cfg.seed + 1)
    held = bank_inputs(spec, heldout, cfg.image_size) if heldout is not None else None
    fold_of = stratified_folds(png.labels, folds, 0)
    probs = np.full(len(png), np.nan)
    per_fold = []
    for k in range(folds):
        te, tr = np.flatnonzero(fold_of == k), np.flatnonzero(fold_of != k)
        result = _fit(cfg, join(png.subset(tr), real_set), out / "checkpoints" / f"fold{k + 1}",
                      f"[fold {k + 1}/{folds}] ", log)
        p = predict(result.model, spec, png.inputs[te])
        probs[te] = p
        m = classification_metrics(png.labels[te], p)
        row = {"fold": k + 1, "n_test": int(te.size), "accuracy": m["accuracy"], "auc": m["auc"],
               "train_seconds": float(sum(h["seconds"] for h in result.history))}
        if held is not None:
            hp = predict(result.model, spec, held.inputs)
            row["heldout_real"] = score_set(held.labels, hp, 0.5)
        per_fold.append(row)
        log(f"[fold {k + 1}/{folds}] png test acc {m['accuracy']:.3f} auc {m['auc']:.3f}")
    pred = probs >= 0.5
    metrics = {"config": cfg.as_dict(), "n_png": len(png), "n_real_train_inputs": len(real_set),
               "real_train_pos": int(real_set.labels.sum()), "folds": folds,
               "png_pooled": score_set(png.labels, probs, 0.5),
               "png_per_fold_accuracy": [r["accuracy"] for r in per_fold], "per_fold": per_fold,
               "png_pooled_accuracy": float((pred == (png.labels == 1)).mean()),
               "train_seconds": float(sum(r["train_seconds"] for r in per_fold)),
               "wall_seconds": time.monotonic() - t0, "torch_threads": torch.get_num_threads(),
               "command": command}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    np.savetxt(out / "png_oof_probs.csv", np.c_[np.arange(len(png)), png.labels, probs], delimiter=",",
               header="index,label,probability", fmt=["%d", "%d", "%.6f"])
    log(f"CV done: pooled PNG accuracy {metrics['png_pooled_accuracy']:.3f} "
        f"{metrics['png_pooled']['accuracy']['ci95']}; {metrics['train_seconds'] / 60:.1f} min training")
    return metrics


def train_final(cfg: RunConfig, real: SliceBank, out: str | Path, *, data_dir: str | Path = HEAD_CT_PNG,
                command: str | None = None, log=print_line) -> Path:
    """Train on all head-ct-png images + all real-anatomy training slices; write ``<name>.pt`` + ``.json``
    (loadable by ``ichnode.infer.deep.load_weights(name, out)``) with the threshold chosen on the training
    data (balanced accuracy on the final model's own un-augmented training inputs)."""
    spec = get(cfg.model)
    out = Path(out)
    png = load_png_set(data_dir, spec, cfg.image_size)
    real_aug = bank_inputs(spec, real, cfg.image_size, copies=cfg.copies, seed=cfg.seed + 1)
    result = _fit(cfg, join(png, real_aug), out / "checkpoints", "[final] ", log)
    real_plain = bank_inputs(spec, real, cfg.image_size)
    train_eval = join(png, real_plain)
    p = predict(result.model, spec, train_eval.inputs)
    threshold = choose_threshold(train_eval.labels, p)
    weights = save_weights(result.model, out / f"{spec.name}.pt")
    overrides = {**(cfg.overrides or {}), **({spec.size_option: cfg.image_size} if spec.size_option else {})}
    write_sidecar(weights, {
        "model": spec.name, "seed": spec.seed, "version": spec.version, "small": cfg.small,
        "overrides": overrides, "config": json.loads(json.dumps(result.config)),
        "image_size": cfg.image_size, "run": cfg.as_dict(), "threshold": threshold,
        "threshold_rule": "max balanced accuracy on the training inputs (PNG + real-anatomy, un-augmented)",
        "train_score_at_threshold": score_set(train_eval.labels, p, threshold),
        "n_png": len(png), "n_real": len(real), "real_seeds": real.meta.get("seeds"),
        "train_seconds": round(sum(h["seconds"] for h in result.history), 1), "command": command,
        "history": result.history})
    log(f"final: {weights}, threshold {threshold:.3f}")
    return weights


def load_model(name: str, weights_dir: str | Path):
    from ichnode.infer.deep import load_weights

    model, meta = load_weights(name, weights_dir)
    return model, meta


def evaluate(name: str, weights_dir: str | Path, heldout: SliceBank, *, threshold: float | None = None,
             data_dir: str | Path = CQ500, log=print_line) -> dict:
    """Figures of one weights folder: held-out real-anatomy slices, and the real CQ500-CT-0 series as
    acquired (contrast-enhanced, read negative by 2 of 3): the share of its brain slices over threshold."""
    from ichnode.infer.deep import aggregate
    from ichnode.synth.background import reformat_thick
    from ichnode.synth.insert import load_background_volume

    spec = get(name)
    model, meta = load_model(name, weights_dir)
    size = int(meta.get("image_size", 128))
    t = float(threshold if threshold is not None else meta.get("threshold", 0.5))
    held = bank_inputs(spec, heldout, size)
    hp = predict(model, spec, held.inputs)
    result = {"weights": str(weights_dir), "threshold": t, "image_size": size,
              "heldout_real_anatomy": score_set(held.labels, hp, t)}
    vol = load_background_volume(data_dir)
    for label, v in (("native", vol), ("5mm", reformat_thick(vol, 5.0)[0])):
        _, idx = select_slices(v.hu, None, v.spacing_mm)
        x = spec.input.hu_to_input(v.hu[idx], (size, size)).array
        p = predict(model, spec, x)
        over = int((p >= t).sum())
        result[f"cq500_ct0_{label}"] = {
            "n_brain_slices": int(idx.size), "over_threshold": wilson(over, int(idx.size)),
            "prob_mean": float(p.mean()), "prob_median": float(np.median(p)), "prob_max": float(p.max()),
            "series_max": aggregate(p, "max"), "series_mean_top3": aggregate(p, "mean_top3")}
    log(json.dumps(result, indent=1))
    return result


# --------------------------------------------------------------------------------------------- CLI
def _seeds(text: str) -> list[int]:
    if ":" in text:
        a, b = text.split(":")
        return list(range(int(a), int(b)))
    return [int(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ichnode.training.real_anatomy", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="insert lesions into the real background and cache slices (.npz)")
    g.add_argument("--out", required=True)
    g.add_argument("--seeds", required=True, help="a:b (range) or a,b,c")
    g.add_argument("--data", default=str(CQ500))
    g.add_argument("--native-every", type=int, default=4)
    g.add_argument("--max-per-case", type=int, default=8)
    g.add_argument("--no-background", action="store_true")
    g.add_argument("--paired-negatives", action="store_true",
                   help="for each positive slice, the lesion-free background slice at the same z as a negative")
    for name in ("crossval", "train"):
        t = sub.add_parser(name)
        t.add_argument("model")
        t.add_argument("--real", required=True, help="training slices (.npz from generate)")
        t.add_argument("--out", required=True)
        t.add_argument("--png", default=str(HEAD_CT_PNG))
        t.add_argument("--epochs", type=int, default=30)
        t.add_argument("--image-size", type=int, default=128)
        t.add_argument("--copies", type=int, default=1, help="augmented copies of each real slice")
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--paper-size", action="store_true")
        t.add_argument("--override", action="append", default=[], help="config KEY=JSON (e.g. width=0.25)")
        t.add_argument("--heldout", help="held-out slices (.npz), scored per fold (crossval)")
    e = sub.add_parser("evaluate")
    e.add_argument("model")
    e.add_argument("--weights", required=True, help="folder with <name>.pt + .json")
    e.add_argument("--heldout", required=True)
    e.add_argument("--threshold", type=float, default=None)
    e.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    command = "python -m ichnode.training.real_anatomy " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))
    if a.cmd == "generate":
        generate(_seeds(a.seeds), a.out, data_dir=a.data, native_every=a.native_every,
                 max_per_case=a.max_per_case, with_background=not a.no_background,
                 paired_negatives=a.paired_negatives)
        return 0
    if a.cmd in ("crossval", "train"):
        overrides = {k: json.loads(v) for k, v in (o.split("=", 1) for o in a.override)} or None
        if overrides:
            overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        cfg = RunConfig(get(a.model).name, a.image_size, a.epochs, not a.paper_size, overrides, a.copies, a.seed)
        real = SliceBank.load(a.real)
        if a.cmd == "crossval":
            crossvalidate(cfg, real, a.out, data_dir=a.png, command=command,
                          heldout=SliceBank.load(a.heldout) if a.heldout else None)
        else:
            print(train_final(cfg, real, a.out, data_dir=a.png, command=command))
        return 0
    res = evaluate(a.model, a.weights, SliceBank.load(a.heldout), threshold=a.threshold)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
