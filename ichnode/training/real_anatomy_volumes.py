"""Real-anatomy training sets for the Dense U-Net (seed 002) and the 3D ResNet volume head (seed 000).

Same cases as the 2D work (:func:`ichnode.training.real_anatomy.case_specs`: one synthetic lesion per seed,
inserted into the de-enhanced real CQ500-CT-0 series by ``ichnode.synth.insert.make_case``; seeds 1000+ for
training, the benchmarks' seeds refused). Every input goes through the registry's ``hu_to_input`` - the
function the engines serve with - exactly as :mod:`ichnode.training.synthetic` does for phantoms:

* **Dense U-Net** (:func:`case_slices`): every axial slice of the case through
  ``get("dense_unet").input.hu_to_input`` at ``image_size``; the class-index target is the case's blood
  fraction, squared like the input (zero padding) and area-averaged to ``image_size``: a pixel is blood
  (class of the case's subtype) when it is at least half covered. Kept per case: up to ``max_positive``
  slices with blood (spread along z), ``case_negatives`` lesion-free slices of the case (no blood at all,
  >= 25 cm^2 of 0..80 HU tissue), and for every kept positive its **paired negative**: the slice at the same
  z of the lesion-free background on the same grid (same mirror and slab thickness), so the level of a slice
  cannot stand in for the blood. Plus the lesion-free background itself (all 5 mm slabs and every 8th
  native slice with tissue, each as acquired and mirrored).
* **3D ResNet** (:func:`build_sets`): each whole case through ``get("resnet3d_multitask").input.hu_to_input``
  with its true volume (blood fraction summed, mL); plus lesion-free background volumes with volume 0:
  native and 5 mm, each as acquired and mirrored, each also with 10 mm cut off the top and off the bottom
  (a different coverage) - 12 volumes.

Sets are cached in one ``.npz`` (under ``var/real3d/``). Training reuses the shipped loops
(:func:`ichnode.training.segment.fit_segmenter`, :func:`ichnode.training.regress3d.fit_volume_regressor`)
with the recipes the shipped sidecars record, and writes ``<name>.pt`` + ``.json`` that load with
``build_models(config, weights_dir=...)``.

    python -m ichnode.training.real_anatomy_volumes generate --seeds 1000:1120 --out var/real3d/train.npz
    python -m ichnode.training.real_anatomy_volumes train-unet --sets var/real3d/train.npz --out var/real3d/unet
    python -m ichnode.training.real_anatomy_volumes train-resnet --sets var/real3d/train.npz --out var/real3d/r3d
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ichnode.models.registry import get
from ichnode.training.classify import input_description, save_weights, write_sidecar
from ichnode.training.loop import jsonable, print_line
from ichnode.training.real_anatomy import CQ500, MIN_TISSUE_MM2, spread_evenly, case_specs, tissue_area_mm2
from ichnode.training.synthetic import SEG_CLASSES, SUBTYPE_CLASS, SliceSet, VolumeSet

IMAGE_SIZE = 128
INPUT_SIZE = (32, 64, 64)
NATIVE_STEP = 8
CROP_MM = 10.0


def fraction_labels(fraction: np.ndarray, subtype: str, size: int, classes=SEG_CLASSES) -> np.ndarray:
    """(z, H, W) blood fraction -> (z, size, size) uint8 class index: squared like ``dense_unet_input`` (zero
    padding, centred), area-averaged; blood where at least half covered."""
    frac = np.asarray(fraction, np.float32)
    z, h, w = frac.shape
    s = max(h, w)
    if h != w:
        sq = np.zeros((z, s, s), np.float32)
        sq[:, (s - h) // 2:(s - h) // 2 + h, (s - w) // 2:(s - w) // 2 + w] = frac
        frac = sq
    out = np.zeros((z, size, size), np.uint8)
    cls = SUBTYPE_CLASS.get(subtype)
    if cls is None or cls not in classes or not frac.any():
        return out
    t = torch.from_numpy(np.ascontiguousarray(frac))[:, None]
    mean = F.interpolate(t, size=(size, size), mode="area")[:, 0].numpy() if s != size else frac
    out[mean >= 0.5] = classes.index(cls) + 1
    return out


def _brain(hu: np.ndarray, spacing_mm) -> np.ndarray:
    return tissue_area_mm2(hu, spacing_mm) >= MIN_TISSUE_MM2


def case_slices(hu: np.ndarray, fraction: np.ndarray, subtype: str, spacing_mm, *, image_size: int = IMAGE_SIZE,
                max_positive: int = 8, case_negatives: int = 2, plain_hu: np.ndarray | None = None):
    """(inputs, labels, z, kind) of one case: positives, case negatives, paired negatives (``plain_hu``)."""
    to_input = get("dense_unet").input.hu_to_input
    labels = fraction_labels(fraction, subtype, image_size)
    area = labels.reshape(len(labels), -1).astype(bool).sum(axis=1)
    pos = spread_evenly(np.flatnonzero(area > 0), max_positive)
    clean = (np.asarray(fraction).reshape(len(fraction), -1).max(axis=1) == 0) & _brain(hu, spacing_mm)
    neg = spread_evenly(np.flatnonzero(clean), case_negatives)
    idx = np.concatenate([pos, neg]).astype(np.int64)
    xs = [to_input(hu[idx], (image_size, image_size)).array] if idx.size else []
    ys = [labels[idx]]
    kinds = [np.array(["pos"] * pos.size + ["neg"] * neg.size)]
    zs = [idx]
    if plain_hu is not None and pos.size:
        xs.append(to_input(plain_hu[pos], (image_size, image_size)).array)
        ys.append(np.zeros((pos.size, image_size, image_size), np.uint8))
        kinds.append(np.array(["pair"] * pos.size))
        zs.append(pos.astype(np.int64))
    if not xs:
        return (np.zeros((0, 1, image_size, image_size), np.float32), np.zeros((0, image_size, image_size), np.uint8),
                np.zeros(0, np.int64), np.zeros(0, str))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(zs), np.concatenate(kinds)


def background_grids(bg):
    """The lesion-free background on the four case grids: {(mirror, thickness): Volume}."""
    from ichnode.synth.background import mirror, reformat_thick

    slab = reformat_thick(bg.volume, 5.0)[0]
    return {(False, None): bg.volume, (True, None): mirror(bg.volume), (False, 5.0): slab, (True, 5.0): mirror(slab)}


def build_sets(seeds, out: str | Path, *, data_dir: str | Path = CQ500, image_size: int = IMAGE_SIZE,
               input_size=INPUT_SIZE, max_positive: int = 8, case_negatives: int = 2, background=None,
               z_slab=None, log=print_line) -> dict:
    """Generate the cases of ``seeds``, cut the U-Net slices and the ResNet volumes, save to ``out`` (.npz).
    ``z_slab`` (test only) keeps that slice range of the background."""
    from ichnode.synth.insert import load_background_volume, make_case, prepare_background

    t0 = time.monotonic()
    specs = case_specs(seeds)  # refuses the benchmarks' seeds before any work
    if background is None:
        vol = load_background_volume(data_dir)
        if z_slab is not None:
            vol = replace(vol, hu=vol.hu[z_slab], datasets=vol.datasets[z_slab])
        background = prepare_background(vol)
    bg = background
    log(f"background ready in {time.monotonic() - t0:.0f} s ({bg.volume.hu.shape})")
    to_input = get("dense_unet").input.hu_to_input
    to_vol = get("resnet3d_multitask").input.hu_to_input
    size3 = tuple(int(v) for v in input_size)
    grids = background_grids(bg)
    sx, sy, s_case, s_z, s_kind = [], [], [], [], []
    vx, vy, v_name = [], [], []
    cases = []
    for key, v in grids.items():  # lesion-free background: slices and volumes
        name = f"bg-{'native' if key[1] is None else '5mm'}{'-m' if key[0] else ''}"
        hu = v.hu[::NATIVE_STEP] if key[1] is None else v.hu
        sp = (v.spacing_mm[0] * (NATIVE_STEP if key[1] is None else 1), *v.spacing_mm[1:])
        keep = np.flatnonzero(_brain(hu, sp))
        sx.append(to_input(hu[keep], (image_size, image_size)).array)
        sy.append(np.zeros((keep.size, image_size, image_size), np.uint8))
        s_case += [name] * keep.size
        s_z.append(keep * (NATIVE_STEP if key[1] is None else 1))
        s_kind += ["bg"] * keep.size
        k = max(1, int(round(CROP_MM / float(v.spacing_mm[0]))))
        for tag, part in (("", v.hu), ("-top", v.hu[:-k]), ("-bottom", v.hu[k:])):
            vx.append(to_vol(part, size3).array[0])
            vy.append(0.0)
            v_name.append(name + tag)
    for spec in specs:
        tc = time.monotonic()
        case = make_case(bg, spec)
        name = f"s{spec.seed}-{spec.subtype}-{spec.volume_ml:g}ml-{'native' if spec.thickness_mm is None else '5mm'}"
        plain = grids[(spec.mirror, spec.thickness_mm)]
        if plain.hu.shape != case.volume.hu.shape:  # not on the same grid: no paired negatives
            plain = None
        x, y, z, kind = case_slices(case.volume.hu, case.fraction, spec.subtype, case.volume.spacing_mm,
                                    image_size=image_size, max_positive=max_positive,
                                    case_negatives=case_negatives, plain_hu=None if plain is None else plain.hu)
        sx.append(x)
        sy.append(y)
        s_case += [name] * len(x)
        s_z.append(z)
        s_kind += list(kind)
        vx.append(to_vol(case.volume.hu, size3).array[0])
        vy.append(float(case.truth["volume_ml"]))
        v_name.append(name)
        cases.append({**asdict(spec), "volume_ml_truth": case.truth["volume_ml"],
                      "n_pos": int((kind == "pos").sum()), "n_neg": int((kind == "neg").sum()),
                      "n_pair": int((kind == "pair").sum()), "seconds": round(time.monotonic() - tc, 1)})
        log(f"case {name}: truth {case.truth['volume_ml']:.1f} mL, {cases[-1]['n_pos']} pos, "
            f"{cases[-1]['n_neg']} neg, {cases[-1]['n_pair']} paired, {time.monotonic() - tc:.1f} s")
    meta = {"seeds": [int(s) for s in seeds], "cases": cases, "image_size": image_size, "input_size": list(size3),
            "classes": list(SEG_CLASSES), "background": str(data_dir), "background_series_uid": bg.source_series_uid,
            "max_positive": max_positive, "case_negatives": case_negatives, "native_step": NATIVE_STEP,
            "seconds": round(time.monotonic() - t0, 1)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    arrays = {"seg_inputs": np.concatenate(sx).astype(np.float32), "seg_labels": np.concatenate(sy),
              "seg_case": np.asarray(s_case), "seg_z": np.concatenate(s_z).astype(np.int32),
              "seg_kind": np.asarray(s_kind), "vol_inputs": np.stack(vx).astype(np.float32),
              "vol_ml": np.asarray(vy, np.float32), "vol_name": np.asarray(v_name)}
    np.savez_compressed(tmp, **arrays, meta=np.asarray(json.dumps(meta)))
    tmp.replace(out)
    kinds = arrays["seg_kind"]
    log(f"{len(kinds)} slices ({int((kinds == 'pos').sum())} with blood, {int((kinds == 'neg').sum())} case "
        f"negatives, {int((kinds == 'pair').sum())} paired, {int((kinds == 'bg').sum())} background); "
        f"{len(vy)} volumes ({sum(v > 0 for v in vy)} with blood) -> {out} in {time.monotonic() - t0:.0f} s")
    return {**arrays, "meta": meta}


def load_sets(path: str | Path) -> tuple[SliceSet, VolumeSet, dict]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        cases = {n: i for i, n in enumerate(dict.fromkeys(str(c) for c in z["seg_case"]))}
        seg = SliceSet(z["seg_inputs"], z["seg_labels"], np.asarray([cases[str(c)] for c in z["seg_case"]], np.int32),
                       z["seg_z"], tuple(meta["classes"]), int(meta["image_size"]))
        vol = VolumeSet(z["vol_inputs"], z["vol_ml"], tuple(str(n) for n in z["vol_name"]),
                        tuple(meta["input_size"]))
    return seg, vol, meta


def _data_line(meta: dict, n: int, what: str) -> str:
    seeds = meta["seeds"]
    return (f"real anatomy: CQ500-CT-0 (de-enhanced) with one synthetic lesion per seed "
            f"(ichnode.training.real_anatomy.case_specs, seeds {min(seeds)}-{max(seeds)}, {len(seeds)} cases) "
            f"+ lesion-free background; {n} {what}")


def train_unet(sets: str | Path, out: str | Path, *, work: str | Path, epochs: int, seed: int = 0,
               command: str | None = None, log=print_line) -> Path:
    """Dense U-Net with the shipped recipe (``ichnode/weights/dense_unet.json``: Adam lr 1e-3, width 0.5)."""
    from ichnode.training.segment import SegRecipe, fit_segmenter

    seg, _, meta = load_sets(sets)
    recipe = SegRecipe(optimizer="adam", lr=1e-3)
    result = fit_segmenter(seg, epochs=epochs, checkpoint_dir=work, seed=seed, recipe=recipe,
                           overrides={"width": 0.5}, log=log)
    spec = get("dense_unet")
    weights = save_weights(result.model, Path(out) / "dense_unet.pt")
    overrides = {k: v for k, v in result.config.items() if spec.small.get(k) != v}
    write_sidecar(weights, {
        "model": spec.name, "seed": spec.seed, "version": spec.version, "small": True,
        "overrides": jsonable(overrides), "config": jsonable(result.config), "image_size": seg.image_size,
        "classes": list(seg.classes), "input": input_description(spec, (seg.image_size,) * 2),
        "output": "seg_logits (B, C, S, S); sigmoid per class; label = argmax class where its p >= 0.5",
        "data": _data_line(meta, len(seg), "slices"), "sets": str(sets),
        "epochs": epochs, "train_seed": seed, "n_train": len(seg), "recipe": asdict(recipe),
        "history": jsonable(result.history), "command": command,
        "train_seconds": round(sum(h["seconds"] for h in result.history), 1),
        "research_only": "trained on synthetic blood in one real background; not shipped"})
    return weights


def train_resnet(sets: str | Path, out: str | Path, *, work: str | Path, epochs: int, seed: int = 0,
                 command: str | None = None, log=print_line) -> Path:
    """3D ResNet volume head with the shipped recipe (``resnet3d_multitask.json``: SGD lr 1e-4, momentum 0.9,
    batch 8, flip; batch-norm statistics re-estimated after the last epoch)."""
    from ichnode.training.recipes import untrained_head_flags
    from ichnode.training.regress3d import RECIPE, fit_volume_regressor

    _, vol, meta = load_sets(sets)
    result = fit_volume_regressor(vol, epochs=epochs, checkpoint_dir=work, seed=seed, recipe=RECIPE, log=log)
    spec = get("resnet3d_multitask")
    weights = save_weights(result.model, Path(out) / "resnet3d_multitask.pt")
    overrides = {k: v for k, v in result.config.items() if spec.small.get(k) != v}
    write_sidecar(weights, {
        "model": spec.name, "seed": spec.seed, "version": spec.version, "small": True,
        "overrides": jsonable(overrides), "config": jsonable(result.config), "input_size": list(vol.input_size),
        "input": input_description(spec, vol.input_size),
        "output": f"{spec.heads.volume.meaning}; prognosis_logit UNTRAINED (no outcome labels): not reported",
        **untrained_head_flags(spec),
        "data": _data_line(meta, len(vol), f"volumes ({int((vol.volume_ml > 0).sum())} with blood, "
                           f"{float(vol.volume_ml.max()):.1f} mL max)"), "sets": str(sets),
        "epochs": epochs, "train_seed": seed, "n_train": len(vol), "recipe": asdict(RECIPE),
        "history": jsonable(result.history), "command": command,
        "train_seconds": round(sum(h["seconds"] for h in result.history), 1),
        "research_only": "trained on synthetic blood in one real background; not shipped"})
    return weights


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if ":" in part:
            a, b = part.split(":")
            out += list(range(int(a), int(b)))
        elif part:
            out.append(int(part))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ichnode.training.real_anatomy_volumes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--seeds", default="1000:1060")
    g.add_argument("--out", required=True)
    g.add_argument("--data", default=str(CQ500))
    g.add_argument("--max-positive", type=int, default=8)
    g.add_argument("--case-negatives", type=int, default=2)
    for name in ("train-unet", "train-resnet"):
        t = sub.add_parser(name)
        t.add_argument("--sets", required=True)
        t.add_argument("--out", required=True)
        t.add_argument("--work", default=None, help="checkpoint folder (default: <out>/checkpoints)")
        t.add_argument("--epochs", type=int, required=True)
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if getattr(a, "threads", None):
        torch.set_num_threads(a.threads)
    command = "python -m ichnode.training.real_anatomy_volumes " + " ".join(
        shlex.quote(s) for s in (argv if argv is not None else sys.argv[1:]))
    if a.cmd == "generate":
        build_sets(_seeds(a.seeds), a.out, data_dir=a.data, max_positive=a.max_positive,
                   case_negatives=a.case_negatives)
        return 0
    work = a.work or str(Path(a.out) / "checkpoints")
    fn = train_unet if a.cmd == "train-unet" else train_resnet
    print(fn(a.sets, a.out, work=work, epochs=a.epochs, seed=a.seed, command=command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
