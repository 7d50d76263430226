"""An engine on synthetic hemorrhage inserted into the real CQ500-CT-0 series (real anatomy, exact truth).

Cases are generated in memory (ichnode.synth.insert), the background loaded and de-enhanced once:
subtypes {iph, ivh, sah, sdh, edh} x volumes {5, 15, 30} mL x slices {native 0.625 mm, 5 mm slab}
x seeds. Split (so figures tuned on one set are confirmed on another):
  tuning   seeds 0-4, not mirrored, no shift; locations drawn by seed
  heldout  seeds 100-104, odd seeds mirrored, a seeded shift of up to 6 mm per axis; locations drawn by
           seed, IPH cycling through all three locations and irregular shapes on even seeds
  final    seeds 200-204, drawn as heldout; run only on the finished engine (heldout's first run
           led to two engine changes, docs/models/real-ct.md)
  confirm  seeds 300-304, drawn as heldout: final's thin-slice run led to the dense-core seeds,
           so final is no longer untouched; confirm was first run on that engine
Per case: found (at least half the inserted blood volume under the engine's label mask), volume error
(engine volume of the connected components overlapping truth vs truth; and total), false-positive volume
(engine voxels farther than 2 mm from any truth voxel). The engine also runs on the lesion-free
(de-enhanced) background: its baseline false-positive volume.

Engines that segment (classical, dense_unet, blast_ct) are scored on their label mask (findings.labels > 0).
An engine without a mask that regresses a volume (resnet3d_multitask: findings.model_volume_ml) is scored on
that volume only: its error against the truth; found and false positives are "n/a" (None in the json), and
on the lesion-free background the regressed volume stands where a mask's FP volume would. ``--weights-dir``
loads the deep engines' weights from another folder (e.g. var/real3d/<run>) instead of ichnode/weights.

    .venv/bin/python benchmarks/real_anatomy.py --split tuning --limit 10 --models classical --out var/real.json
    .venv/bin/python benchmarks/real_anatomy.py --split confirm --seeds 302 --thickness 5 --models dense_unet \
        --weights-dir var/real3d/unet --out var/real3d/eval/unet.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ichnode.config import load_config  # noqa: E402
from ichnode.infer.engine import InferenceEngine, build_models  # noqa: E402
from ichnode.synth.insert import InsertSpec, load_background_volume, make_case, prepare_background  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "cq500-ct0"
SUBTYPES = ("iph", "ivh", "sah", "sdh", "edh")
VOLUMES = (5.0, 15.0, 30.0)
THICKNESSES = (None, 5.0)  # None: the native 0.625 mm slices
SEEDS = {"tuning": range(0, 5), "heldout": range(100, 105), "final": range(200, 205),
         "confirm": range(300, 305)}
FP_DISTANCE_MM = 2.0
WITHIN = 0.20

_STATE: dict = {}


def case_specs(split: str, seeds_per_cell: int | None = None, thicknesses=THICKNESSES,
               subtypes=SUBTYPES, volumes=VOLUMES, only_seeds=None) -> list[InsertSpec]:
    seeds = list(SEEDS[split])[:seeds_per_cell] if seeds_per_cell else list(SEEDS[split])
    if only_seeds:
        seeds = [s for s in SEEDS[split] if s in only_seeds]
    specs = []
    for seed, volume, thickness, subtype in itertools.product(seeds, volumes, thicknesses, subtypes):
        extra = {}
        if split != "tuning":
            rng = np.random.default_rng([seed, 17])
            extra = {"mirror": bool(seed % 2), "shift_mm": tuple(np.round(rng.uniform(-6, 6, 3), 1))}
            if subtype == "iph":
                extra.update(location=("deep", "lobar", "infratentorial")[seed % 3],
                             shape="irregular" if seed % 2 == 0 else "regular")
        specs.append(InsertSpec(subtype=subtype, volume_ml=volume, thickness_mm=thickness, seed=seed, **extra))
    return specs


def _init(config_path, models, data_dir, weights_dir=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = load_config(config_path)
        engine_cfg = config.engine if not models else replace(config.engine, models=tuple(models))
        _STATE["engine"] = InferenceEngine(build_models(engine_cfg, weights_dir=weights_dir))
    _STATE["background"] = prepare_background(load_background_volume(data_dir))


def score(truth_frac: np.ndarray, engine_mask: np.ndarray, voxel_ml: float, spacing) -> dict:
    """found / volume error / false positives of one engine mask against the truth fraction."""
    truth_ml = float(truth_frac.sum(dtype=np.float64)) * voxel_ml
    total_ml = float(np.count_nonzero(engine_mask)) * voxel_ml
    truth_any = truth_frac > 0.05
    if truth_any.any():
        far = ndi.distance_transform_edt(~truth_any, sampling=spacing) > FP_DISTANCE_MM
    else:
        far = np.ones(engine_mask.shape, bool)
    fp_ml = float(np.count_nonzero(engine_mask & far)) * voxel_ml
    if truth_ml <= 0:
        return {"truth_ml": 0.0, "engine_total_ml": total_ml, "fp_ml": fp_ml}
    covered = float(truth_frac[engine_mask].sum(dtype=np.float64)) * voxel_ml
    labels, _ = ndi.label(engine_mask)
    hit = np.unique(labels[truth_any & engine_mask])
    hit = hit[hit > 0]
    lesion_ml = float(np.count_nonzero(np.isin(labels, hit))) * voxel_ml if hit.size else 0.0
    return {"truth_ml": truth_ml, "covered_ml": covered, "found": covered >= 0.5 * truth_ml,
            "engine_lesion_ml": lesion_ml, "engine_total_ml": total_ml, "fp_ml": fp_ml,
            "error_pct": 100.0 * (lesion_ml / truth_ml - 1.0), "total_error_pct": 100.0 * (total_ml / truth_ml - 1.0)}


def score_volume(truth_frac: np.ndarray, model_ml: float, voxel_ml: float) -> dict:
    """A regressed volume (no mask) against the truth: error only; found / FP are not defined (None)."""
    truth_ml = float(truth_frac.sum(dtype=np.float64)) * voxel_ml
    row = {"truth_ml": truth_ml, "model_volume_ml": model_ml, "engine_lesion_ml": model_ml,
           "engine_total_ml": model_ml, "found": None, "covered_ml": None, "fp_ml": None}
    if truth_ml > 0:
        row["error_pct"] = row["total_error_pct"] = 100.0 * (model_ml / truth_ml - 1.0)
    return row


def score_findings(case, findings) -> dict:
    """The mask when the engine segments; else its regressed volume (see the module docstring)."""
    if not findings.segment_classes and findings.model_volume_ml is not None:
        return score_volume(case.fraction, float(findings.model_volume_ml), case.volume.voxel_ml)
    return score(case.fraction, findings.labels > 0, case.volume.voxel_ml, case.volume.spacing_mm)


def run_case(spec: InsertSpec) -> dict:
    bg, engine = _STATE["background"], _STATE["engine"]
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        case = make_case(bg, spec)
    made = time.perf_counter()
    findings = engine.analyse(case.volume)
    row = {"subtype": spec.subtype, "target_ml": spec.volume_ml, "thickness_mm": spec.thickness_mm or "native",
           "seed": spec.seed, "location": case.truth.get("location"), "side": case.truth.get("side"),
           "mirror": spec.mirror, "shift_mm": list(spec.shift_mm),
           **score_findings(case, findings),
           "make_s": round(made - started, 2), "engine_s": round(time.perf_counter() - made, 2)}
    return row


def run_baseline(thickness) -> dict:
    row = run_case(InsertSpec(subtype="none", thickness_mm=thickness))
    out = {"thickness_mm": thickness or "native", "fp_ml": row["fp_ml"], "engine_total_ml": row["engine_total_ml"],
           "engine_s": row["engine_s"]}
    if "model_volume_ml" in row:
        out["model_volume_ml"] = row["model_volume_ml"]
    return out


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _rate(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def _ml(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def summarise(rows: list[dict]) -> dict:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["subtype"], r["target_ml"], str(r["thickness_mm"])), []).append(r)
    cells = []
    for (subtype, target, thick), rs in sorted(groups.items()):
        errs = [r["error_pct"] for r in rs]
        cells.append({"subtype": subtype, "target_ml": target, "thickness_mm": thick, "n": len(rs),
                      "found_rate": _rate([r["found"] for r in rs]),
                      "median_error_pct": float(np.median(errs)),
                      "within_20pct": float(np.mean([abs(e) <= 100 * WITHIN for e in errs])),
                      "median_fp_ml": _median([r["fp_ml"] for r in rs])})
    big = [r for r in rows if r["target_ml"] >= 10]
    within = {s: float(np.mean([abs(r["error_pct"]) <= 100 * WITHIN for r in big if r["subtype"] == s]))
              for s in SUBTYPES if any(r["subtype"] == s for r in big)}
    return {"cells": cells, "found_rate_from_5ml": _rate([r["found"] for r in rows if r["target_ml"] >= 5])
            if rows else None, "within_20pct_from_10ml": within,
            "within_20pct_from_10ml_all": float(np.mean([abs(r["error_pct"]) <= 100 * WITHIN for r in big]))
            if big else None,
            "median_error_pct": float(np.median([r["error_pct"] for r in rows])) if rows else None,
            "median_abs_error_pct": float(np.median([abs(r["error_pct"]) for r in rows])) if rows else None,
            "median_fp_ml": _median([r["fp_ml"] for r in rows]) if rows else None,
            "mean_engine_s": float(np.mean([r["engine_s"] for r in rows])) if rows else None}


def print_tables(rows, summary, baseline) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 150))
    t = Table(title="cases")
    for col in ("subtype", "mL", "slices", "seed", "where", "truth", "found", "engine", "err %", "total", "FP mL", "s"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(r["subtype"], f"{r['target_ml']:g}", str(r["thickness_mm"]), str(r["seed"]),
                  f"{r['location']} {r['side']}{' M' if r['mirror'] else ''}", f"{r['truth_ml']:.2f}",
                  "n/a" if r["found"] is None else "yes" if r["found"] else "NO", f"{r['engine_lesion_ml']:.2f}",
                  f"{r['error_pct']:+.0f}", f"{r['engine_total_ml']:.2f}", _ml(r["fp_ml"]),
                  f"{r['make_s'] + r['engine_s']:.0f}")
    console.print(t)
    s = Table(title="per subtype, volume, slices")
    for col in ("subtype", "mL", "slices", "n", "found", "median err %", "within 20%", "median FP mL"):
        s.add_column(col, justify="right")
    for c in summary["cells"]:
        s.add_row(c["subtype"], f"{c['target_ml']:g}", c["thickness_mm"], str(c["n"]), _pct(c["found_rate"]),
                  f"{c['median_error_pct']:+.0f}", f"{c['within_20pct']:.0%}", _ml(c["median_fp_ml"]))
    console.print(s)
    console.print(f"found rate (from 5 mL): {_pct(summary['found_rate_from_5ml'])}   within 20% (>= 10 mL): "
                  + ", ".join(f"{k} {v:.0%}" for k, v in summary["within_20pct_from_10ml"].items())
                  + f"   median FP: {_ml(summary['median_fp_ml'])} mL")
    if summary.get("median_error_pct") is not None:
        console.print(f"all cases: within 20% (>= 10 mL) {_pct(summary['within_20pct_from_10ml_all'])}   "
                      f"median error {summary['median_error_pct']:+.0f}% (|error| {summary['median_abs_error_pct']:.0f}%)"
                      f"   mean engine time {summary['mean_engine_s']:.1f} s per case")
    console.print("baseline (no lesion): " + ", ".join(
        f"{b['thickness_mm']}: " + (f"FP {b['fp_ml']:.2f} mL" if b["fp_ml"] is not None
                                    else f"regressed volume {b['model_volume_ml']:.2f} mL (no mask)")
        for b in baseline))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=sorted(SEEDS), default="tuning")
    ap.add_argument("--config", type=Path, default=None, help="ichnode config (default: embedded)")
    ap.add_argument("--models", default=None, help="comma list overriding engine.models, e.g. classical")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=None, help="first N cases only (spread over subtypes)")
    ap.add_argument("--seeds-per-cell", type=int, default=None, help="the split's first N seeds only")
    ap.add_argument("--seeds", default=None, help="these of the split's seeds only, e.g. 301,302")
    ap.add_argument("--thickness", choices=["native", "5"], default=None, help="one slice thickness only")
    ap.add_argument("--subtypes", default=",".join(SUBTYPES))
    ap.add_argument("--volumes", default=",".join(f"{v:g}" for v in VOLUMES), help="mL, e.g. 15,30")
    ap.add_argument("--weights-dir", type=Path, default=None,
                    help="deep engines' weights folder (default: ichnode/weights), passed to build_models")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"real data absent: {args.data} (see ../shared/data/README.md)")
        return 0
    thicknesses = THICKNESSES if args.thickness is None else ((None,) if args.thickness == "native" else (5.0,))
    specs = case_specs(args.split, args.seeds_per_cell, thicknesses, tuple(args.subtypes.split(",")),
                       tuple(float(v) for v in args.volumes.split(",")),
                       {int(v) for v in args.seeds.split(",")} if args.seeds else None)
    if args.limit:
        specs = specs[: args.limit]
    models = [m for m in args.models.split(",") if m] if args.models else None
    started = time.perf_counter()
    init = (args.config, models, args.data, args.weights_dir)
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers, initializer=_init, initargs=init) as pool:
            rows = list(pool.map(run_case, specs))
            baseline = [] if args.no_baseline else list(pool.map(run_baseline, thicknesses))
    else:
        _init(*init)
        rows = [run_case(s) for s in specs]
        baseline = [] if args.no_baseline else [run_baseline(t) for t in thicknesses]
    summary = summarise(rows)
    print_tables(rows, summary, baseline)
    print(f"{len(rows)} cases in {time.perf_counter() - started:.0f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"split": args.split, "models": models, "config": str(args.config),
                                        "weights_dir": None if args.weights_dir is None else str(args.weights_dir),
                                        "rows": rows, "summary": summary, "baseline": baseline}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
