"""Stratified k-fold cross-validation of a 2D slice classifier on head-ct-png.

Folds: within each class the images are shuffled with ``numpy.random.default_rng(seed)`` and dealt
round-robin into ``folds`` folds, so every fold has the same class balance (+-1) and the split is fixed
by the seed. Each fold trains a fresh network (same seed, same recipe as :mod:`ichnode.training.classify`)
on the other folds for a fixed number of epochs and is scored once, after the last epoch, on its held-out
images: no epoch or threshold is chosen on the held-out fold. Threshold 0.5 on P(hemorrhage).

Output folder: ``report.md``, ``roc.png`` (one curve per fold + the pooled out-of-fold curve),
``metrics.json`` (per fold, mean/SD, pooled) and ``predictions.csv`` (id, fold, label, probability).
Checkpoints go to ``work_dir`` (default ``<out>/checkpoints``), one subfolder per fold, so an interrupted
run resumes.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ichnode.models.registry import get
from ichnode.training.classify import fit, model_overrides, predict
from ichnode.training.loop import Log, default_device, jsonable, print_line
from ichnode.training.recipes import RECIPES
from ichnode.training.metrics import CLASSIFICATION_KEYS, classification_metrics, roc_curve, summarize
from ichnode.training.plots import roc_png
from ichnode.training.png_dataset import load_png_set

PAPER_004 = {"accuracy": 0.80, "sensitivity": 0.80, "specificity": 0.80, "precision": 0.80, "f1": 0.80,
             "auc": 0.80}


def stratified_folds(labels: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number (0..folds-1) for each sample, class-stratified and fixed by ``seed``."""
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError("need at least 2 folds")
    rng = np.random.default_rng(seed)
    fold = np.empty(labels.size, dtype=np.int64)
    offset = 0
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        if idx.size < folds:
            raise ValueError(f"class {cls} has {idx.size} samples, fewer than {folds} folds")
        idx = rng.permutation(idx)
        fold[idx] = (np.arange(idx.size) + offset) % folds
        offset += idx.size  # continue the deal where the previous class stopped: balances fold sizes
    return fold


def crossvalidate(
    model_name: str,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    folds: int = 5,
    epochs: int,
    image_size: int,
    small: bool = True,
    seed: int = 0,
    work_dir: str | Path | None = None,
    resume: bool = True,
    command: str | None = None,
    log: Log | None = print_line,
) -> dict[str, Any]:
    """Run the cross-validation, write the report files into ``out_dir`` and return the metrics dict
    (``per_fold``, ``summary`` = mean/SD over folds, ``pooled`` = out-of-fold metrics over all images)."""
    spec = get(model_name)
    recipe = RECIPES[spec.name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "checkpoints"
    log = log or (lambda _line: None)
    t0 = time.monotonic()
    data = load_png_set(data_dir, spec, image_size)
    fold_of = stratified_folds(data.labels, folds, seed)
    device = default_device()
    probs = np.full(len(data), np.nan)
    per_fold: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    for k in range(folds):
        test_idx, train_idx = np.flatnonzero(fold_of == k), np.flatnonzero(fold_of != k)
        train, test = data.subset(train_idx), data.subset(test_idx)
        tf = time.monotonic()
        result = fit(spec, train, epochs=epochs, checkpoint_dir=work_dir / f"fold{k + 1}", small=small,
                     seed=seed, resume=resume, val=None, device=device, log=log,
                     tag=f"[fold {k + 1}/{folds}] ")
        config = result.config
        p = predict(result.model, spec, test.inputs, device=device)
        probs[test_idx] = p
        m = classification_metrics(test.labels, p)
        m.update({"fold": k + 1, "n_test": int(test_idx.size), "n_train": int(train_idx.size),
                  "test_positives": int(test.labels.sum()), "final_train_loss": result.history[-1]["loss"],
                  # training time summed over the epochs, including sessions this run resumed from
                  "train_seconds": float(sum(h["seconds"] for h in result.history)),
                  "seconds": time.monotonic() - tf})
        per_fold.append(m)
        log(f"[fold {k + 1}/{folds}] held-out: acc {m['accuracy']:.3f} sens {m['sensitivity']:.3f} "
            f"spec {m['specificity']:.3f} prec {m['precision']:.3f} f1 {m['f1']:.3f} auc {m['auc']:.3f}")
    pooled = classification_metrics(data.labels, probs)
    summary = summarize(per_fold)
    wall = time.monotonic() - t0
    metrics = {
        "model": spec.name, "seed_paper": spec.seed, "version": spec.version, "small": small,
        "config": jsonable(config), "overrides": jsonable(model_overrides(spec, image_size)),
        "image_size": image_size, "epochs": epochs, "folds": folds, "split_seed": seed,
        "recipe": asdict(recipe), "n_images": len(data),
        "n_positive": int(data.labels.sum()), "per_fold": per_fold, "summary": summary, "pooled": pooled,
        "wall_seconds": wall, "train_seconds": float(sum(f["train_seconds"] for f in per_fold)),
        "device": str(device), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "command": command,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
    with open(out_dir / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "fold", "probability"])  # labels stay in the data set's labels.csv
        for i, image_id in enumerate(data.ids):
            w.writerow([image_id, int(fold_of[i]) + 1, f"{probs[i]:.6f}"])
    curves = []
    for k in range(folds):
        sel = fold_of == k
        fpr, tpr, _ = roc_curve(data.labels[sel], probs[sel])
        curves.append((fpr, tpr, f"fold {k + 1}: AUC {per_fold[k]['auc']:.3f}"))
    fpr, tpr, _ = roc_curve(data.labels, probs)
    curves.append((fpr, tpr, f"pooled out-of-fold: AUC {pooled['auc']:.3f}"))
    roc_png(curves, out_dir / "roc.png", title=f"{spec.name} (seed {spec.seed}), {folds}-fold CV, n={len(data)}")
    (out_dir / "report.md").write_text(render_report(metrics))
    log(f"{spec.name}: {folds}-fold CV done in {wall:.0f} s; mean acc {summary['accuracy']['mean']:.3f} "
        f"auc {summary['auc']['mean']:.3f}; report {out_dir / 'report.md'}")
    return metrics


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(type(obj))


def _pct(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


NAMES = {"accuracy": "Accuracy", "sensitivity": "Sensitivity (TPR)", "specificity": "Specificity (TNR)",
         "precision": "Precision (PPV)", "f1": "F1", "balanced_accuracy": "Balanced accuracy = (TPR+TNR)/2",
         "auc": "ROC AUC"}


def render_report(m: dict[str, Any]) -> str:
    s, pooled = m["summary"], m["pooled"]
    r = m["recipe"]
    lines = [
        f"# {m['model']} (seed {m['seed_paper']}) - {m['folds']}-fold cross-validation on head-ct-png",
        "",
        "Research result, **not for clinical use**.",
        "",
        "## Set-up",
        "",
        f"- Data: head-ct-png, {m['n_images']} images ({m['n_positive']} hemorrhage, "
        f"{m['n_images'] - m['n_positive']} normal), one image per patient, so image-level folds are "
        "patient-level folds.",
        f"- Folds: stratified, {m['folds']} folds, split seed {m['split_seed']} "
        "(`ichnode.training.crossval.stratified_folds`); every fold trains from scratch.",
        f"- Network: `{m['model']}` version {m['version']}, "
        f"{'registry small configuration' if m['small'] else 'paper configuration'}"
        + (f" with {m['overrides']}" if m["overrides"] else "") + f": `{json.dumps(m['config'])}`.",
        f"- Input: {m['image_size']} x {m['image_size']} px; grey levels 0..255 mapped back to HU by the inverse "
        "of the (assumed) brain-window export, 0..80 HU, then the registry's `hu_to_input` - the path a CT "
        "slice takes at inference (see `ichnode/training/png_dataset.py`).",
        f"- Training: {r['optimizer']} lr {r['lr']:g}"
        + (f" (momentum {r['momentum']:g})" if r["optimizer"] == "sgd" else "")
        + (f", x{r['gamma']:g} every {r['step_size']} epochs" if r["step_size"] else "")
        + f", batch {r['batch_size']}, loss `{r['loss']}`, {m['epochs']} epochs (paper: {r['paper_epochs']}), "
        "random flip + rotation +-15 deg, no pretraining. "
        f"Source: {r['source']}.",
        "- Evaluation: the model after the last epoch, threshold 0.5 on P(hemorrhage); nothing is tuned on "
        "the held-out fold.",
        f"- Machine: {m['device']}, {m['torch_threads']} torch thread(s), torch {m['torch']}; "
        f"training time {m['train_seconds'] / 60:.1f} min summed over the folds' epochs "
        f"(this invocation: {m['wall_seconds'] / 60:.1f} min wall, including resumed folds and data loading).",
        "",
        "## Results (held-out folds)",
        "",
        "| metric | mean +- SD over folds (%) | pooled out-of-fold (%) | seed 004 paper (%) |",
        "|---|---|---|---|",
    ]
    for k in CLASSIFICATION_KEYS:
        paper = PAPER_004.get(k)
        if k == "balanced_accuracy":
            paper_s = "80 (its \"AUC\", Eq. 3.6)"
        elif k == "auc":
            paper_s = "- (its \"AUC\" is balanced accuracy)"
        else:
            paper_s = _pct(paper) if paper is not None else "-"
        lines.append(f"| {NAMES[k]} | {_pct(s[k]['mean'])} +- {_pct(s[k]['sd'])} | {_pct(pooled[k])} | {paper_s} |")
    lines += [
        "",
        "SD: sample standard deviation (ddof = 1) over the folds. The seed 004 paper reports one 80/20 split "
        "of the full 200-image set (ResNet-50, ImageNet-pretrained in MATLAB, 224 px, 30 epochs); here "
        "150 of those images, 5 folds, a small network trained from scratch - so the comparison is indicative "
        "only. The paper's \"AUC\" (Eq. 3.6) is (TPR + TNR) / 2, i.e. balanced accuracy, not the ROC area.",
        "",
        "### Per fold",
        "",
        "| fold | n test (pos) | acc | sens | spec | prec | F1 | AUC | TP | FP | TN | FN | final train loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in m["per_fold"]:
        lines.append(
            f"| {f['fold']} | {f['n_test']} ({f['test_positives']}) | {_pct(f['accuracy'])} | "
            f"{_pct(f['sensitivity'])} | {_pct(f['specificity'])} | {_pct(f['precision'])} | {_pct(f['f1'])} | "
            f"{_pct(f['auc'])} | {f['tp']} | {f['fp']} | {f['tn']} | {f['fn']} | {f['final_train_loss']:.3f} |")
    lines += [
        "",
        "![ROC curves](roc.png)",
        "",
        "Files: `metrics.json` (all numbers), `predictions.csv` (fold and out-of-fold P(hemorrhage) per "
        "image id; the labels are in the data set's `labels.csv`).",
        "",
        "## Command",
        "",
        "```",
        m.get("command") or "(called from Python)",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ichnode.training.crossval",
                                description="Stratified k-fold cross-validation of a 2D slice classifier.")
    p.add_argument("model", help="registry name or seed (004 / 003 / 001)")
    p.add_argument("--data", required=True, help="head-ct-png folder (labels.csv + images/)")
    p.add_argument("--out", required=True, help="report folder (report.md, roc.png, metrics.json)")
    p.add_argument("--work", default=None, help="checkpoint folder (default <out>/checkpoints)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paper-size", action="store_true", help="paper configuration instead of the small one")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on the CPU")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    command = "python -m ichnode.training.crossval " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))
    crossvalidate(a.model, a.data, a.out, folds=a.folds, epochs=a.epochs, image_size=a.image_size,
                  small=not a.paper_size, seed=a.seed, work_dir=a.work, resume=not a.no_resume, command=command)
    return 0


def cli(model: str, argv: list[str]) -> int:
    """``ichnode evaluate MODEL ...``: this module's command line for a 2D slice classifier."""
    return main([model, *argv])


if __name__ == "__main__":
    raise SystemExit(main())
