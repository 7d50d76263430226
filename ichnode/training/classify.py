"""Training loop for the 2D slice classifiers (seeds 001, 003, 004) on the head-ct-png set.

Per-network recipe (:data:`RECIPES`), from the papers where they say it:

=================  ==================================  =====  ======  ==================================
network (seed)     optimiser                           batch  epochs  loss here
=================  ==================================  =====  ======  ==================================
resnet50_cls 004   Adam, lr 1e-4                       16     30      cross-entropy on 2 logits
dtvit 001          SGD, lr 0.01, momentum 0 (the       8      50      CE(ICH) + CE(location); location
                   paper names none; PyTorch default)                 term masked (no location labels)
vgg_wso 003        Adam, lr 1e-3, /10 every 5 epochs   8      20      BCE on the "any" logit only
                                                                      (no subtype labels here)
=================  ==================================  =====  ======  ==================================

"epochs" are the papers' and the defaults used for the shipped weights; callers pass their own.

Location labels (seed 001) and subtype labels (seed 003) do not exist in head-ct-png: the DTViT location
loss is computed only over samples whose location target is >= 0, which here is none, so it contributes
exactly 0 and the location head keeps its initial weights; the VGG subtype logits get no loss at all.

Augmentation (training only, the same for all three): random horizontal flip and a random rotation in
[-15, 15] degrees (seed 001's rotation), bilinear, border padding. No ImageNet pretraining (none is
shipped or reachable); every network starts from its random initialisation.

The epochs and their resumable checkpoints are the one training loop's (``ichnode.training.loop``).

CUDA is used when available, the CPU otherwise; on the CPU call ``torch.set_num_threads`` first.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ichnode.models.registry import ModelSpec, get
from ichnode.training.cards import write_card
from ichnode.training.loop import (Log, default_device, jsonable, open_run, print_line, run_epochs, save_atomic,
                                   seeded_model)
from ichnode.training.metrics import classification_metrics
from ichnode.training.png_dataset import PngSet, load_png_set
from ichnode.training.recipes import Recipe, recipe_for, untrained_head_flags

def model_overrides(spec: ModelSpec, image_size: int) -> dict[str, Any]:
    """Configuration changes needed for ``image_size`` (the registry's ``size_option``: a ViT's position
    embedding is bound to the input size)."""
    return {spec.size_option: int(image_size)} if spec.size_option else {}


# ---------------------------------------------------------------------------------------- losses
def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean CE over the samples with ``target >= 0``; exactly 0 (still in the graph) when there are none."""
    keep = target >= 0
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], target[keep])


def compute_loss(recipe: Recipe, out: dict[str, torch.Tensor], y: torch.Tensor,
                 location: torch.Tensor | None = None) -> torch.Tensor:
    if recipe.loss == "ce":
        return F.cross_entropy(out["logits"], y)
    if recipe.loss == "ce+masked_ce":
        if location is None:  # head-ct-png has no location labels: every target is "unknown"
            location = torch.full_like(y, -1)
        return F.cross_entropy(out["ich_logits"], y) + masked_cross_entropy(out["location_logits"], location)
    if recipe.loss == "bce_any":
        return F.binary_cross_entropy_with_logits(out["logits"][:, 0], y.float())
    raise ValueError(f"unknown loss {recipe.loss!r}")


# ---------------------------------------------------------------------------------- augmentation
def augment_batch(x: torch.Tensor, generator: torch.Generator, max_degrees: float = 15.0) -> torch.Tensor:
    """Random horizontal flip (p = 0.5) and rotation in [-max_degrees, max_degrees] per sample."""
    b = x.shape[0]
    flip = torch.rand(b, generator=generator) < 0.5
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sx, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * sx, cos
    theta = theta.to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ loop
@dataclass
class FitResult:
    model: nn.Module
    history: list[dict[str, Any]]
    config: dict[str, Any]  # the registry configuration the model was built with
    resumed_from: int  # epochs already done when this call started (0: fresh start)


@torch.no_grad()
def predict(model: nn.Module, spec: ModelSpec | str, inputs: np.ndarray | torch.Tensor,
            batch_size: int = 32, device: torch.device | None = None) -> np.ndarray:
    """P(hemorrhage) for each prepared input (eval mode), read by the registry's ``hemorrhage`` head."""
    head = (get(spec) if isinstance(spec, str) else spec).heads.hemorrhage
    device = device or next(model.parameters()).device
    model.eval()
    x = torch.as_tensor(inputs)
    probs = [head(model(x[i : i + batch_size].to(device))).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(probs).numpy().astype(np.float64)


def _fmt_metrics(m: dict[str, float], keys=("accuracy", "sensitivity", "specificity", "auc")) -> str:
    short = {"accuracy": "acc", "sensitivity": "sens", "specificity": "spec", "auc": "auc"}
    return " ".join(f"{short.get(k, k)} {m[k]:.3f}" for k in keys)


def fit(
    spec: ModelSpec | str,
    train: PngSet,
    *,
    epochs: int,
    checkpoint_dir: str | Path | None,
    small: bool = True,
    seed: int = 0,
    resume: bool = True,
    val: PngSet | None = None,
    device: torch.device | None = None,
    log: Log | None = print_line,
    tag: str = "",
    config_overrides: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``spec`` on ``train`` for ``epochs`` epochs (checkpointing into ``checkpoint_dir``).

    With ``val`` given, the validation metrics are computed and logged after each epoch (they are never
    used to choose an epoch: the model returned is the one after the last epoch). ``config_overrides``
    change the registry configuration (e.g. a wider network than the small one); they enter the checkpoint
    meta through the configuration, so a checkpoint of another configuration is refused.
    """
    spec = get(spec) if isinstance(spec, str) else spec
    recipe = recipe_for(spec)
    log = log or (lambda _line: None)
    device = device or default_device()
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    if len(train) == 0:
        raise ValueError("empty training set")

    overrides = {**(config_overrides or {}), **model_overrides(spec, train.image_size)}
    config = spec.config(small, **overrides)
    model = seeded_model(spec, config, seed, device)
    meta = {"model": spec.name, "version": spec.version, "config": jsonable(config), "seed": seed,
            "image_size": train.image_size, "train_ids": _ids_digest(train.ids), "recipe": asdict(recipe)}
    run = open_run(f"{tag}{spec.name}", model, optimizer=recipe.optimizer, lr=recipe.lr,
                   momentum=recipe.momentum, seed=seed, meta=meta, checkpoint_dir=checkpoint_dir,
                   resume=resume, log=log,
                   scheduler=(lambda opt: torch.optim.lr_scheduler.StepLR(opt, recipe.step_size, recipe.gamma))
                   if recipe.step_size else None)

    x_all = torch.from_numpy(train.inputs)
    y_all = torch.from_numpy(train.labels)
    n = len(train)
    n_params = sum(p.numel() for p in model.parameters())
    if run.start == 0:
        log(f"{tag}{spec.name}: {n_params:,} parameters, {n} training images at {train.image_size} px, "
            f"{recipe.optimizer} lr {recipe.lr:g}, batch {recipe.batch_size}, {epochs} epochs, device {device}")
    probs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x, y = x_all[idx], y_all[idx]
        if recipe.augment:
            x = augment_batch(x, run.generator)
        x, y = x.to(device), y.to(device)
        out = model(x)
        probs.append(spec.heads.hemorrhage(out).detach().cpu())
        labels.append(y.cpu())
        return compute_loss(recipe, out, y)

    def epoch_metrics(model: nn.Module) -> tuple[dict[str, Any], str]:
        train_m = classification_metrics(torch.cat(labels).numpy(), torch.cat(probs).numpy())
        probs.clear()
        labels.clear()
        columns = {f"train_{k}": train_m[k] for k in ("accuracy", "auc")}
        text = f" train acc {train_m['accuracy']:.3f}"
        if val is not None and len(val):
            vm = classification_metrics(val.labels, predict(model, spec, val.inputs, device=device))
            columns.update({f"val_{k}": vm[k] for k in ("accuracy", "sensitivity", "specificity", "auc")})
            text += f" | val {_fmt_metrics(vm)}"
        return columns, text

    run_epochs(run, n=n, batch_size=recipe.batch_size, epochs=epochs, batch_loss=batch_loss, log=log,
               epoch_metrics=epoch_metrics)
    return FitResult(model, run.history, config, run.start)


def write_sidecar(weights: Path, fields: dict) -> None:
    """The weights' .json: fields, then the weights' sha256 (which the model card quotes)."""
    record = {**fields, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    weights.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")


def run_fields(history: list[dict], recipe, *, epochs: int, seed: int, n_train: int,
               n_phantoms: int, command: str | None) -> dict:
    """The sidecar's account of a training run on synthetic phantoms (segment.py, regress3d.py)."""
    return {"epochs": epochs, "train_seed": seed, "n_train": n_train, "n_phantoms": n_phantoms,
            "recipe": asdict(recipe), "history": jsonable(history), "command": command,
            "train_seconds": round(sum(h["seconds"] for h in history), 1)}


def input_description(spec: ModelSpec, size: Sequence[int]) -> str:
    """The sidecar's ``input``: the registry function at the trained size (shared by all trainers)."""
    return (f"get({spec.name!r}).input.hu_to_input(hu, size) at {'x'.join(str(v) for v in size)}: "
            f"{spec.input.values}")


# ---------------------------------------------------------------------------------- entry point
def weights_name(spec: ModelSpec) -> str:
    return f"{spec.name}.pt"


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """State dict (CPU, float32) loadable with ``torch.load(path, weights_only=True)``."""
    path = Path(path)
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    save_atomic(state, path)
    return path


def train_classifier(
    model_name: str,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    epochs: int,
    image_size: int,
    small: bool = True,
    seed: int = 0,
    resume: bool = True,
    cv_metrics: str | Path | dict | None = None,
    cv_report: str | None = None,
    command: str | None = None,
    checkpoint_dir: str | Path | None = None,
    log: Log | None = print_line,
) -> Path:
    """Train ``model_name`` on every labelled image in ``data_dir``; write into ``out_dir``:
    ``<name>.pt`` (state dict), ``<name>.json`` (build configuration and
    input preparation) and ``<name>.md`` (model card, with the cross-validation metrics from
    ``cv_metrics`` - a ``metrics.json`` written by :func:`ichnode.training.crossval.crossvalidate`, or its
    dict - when given). The resumable ``checkpoint.pt`` goes to ``checkpoint_dir`` (default ``out_dir``;
    keep it out of ``ichnode/weights``, which ships). Returns the weights path."""

    spec = get(model_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_png_set(data_dir, spec, image_size)
    result = fit(spec, data, epochs=epochs, checkpoint_dir=checkpoint_dir or out_dir, small=small, seed=seed,
                 resume=resume, log=log)
    weights = save_weights(result.model, out_dir / weights_name(spec))
    overrides = model_overrides(spec, image_size)
    sidecar = {
        "model": spec.name, "seed": spec.seed, "version": spec.version, "small": small,
        "overrides": jsonable(overrides), "config": jsonable(result.config), "image_size": image_size,
        "input": "head-ct-png grey levels -> HU (png_dataset.grey_to_hu), then "
                 + input_description(spec, (image_size, image_size)),
        "output": spec.heads.hemorrhage.meaning,
        **untrained_head_flags(spec),
        "epochs": epochs, "train_seed": seed, "n_train": len(data),
    }
    write_sidecar(weights, sidecar)
    if isinstance(cv_metrics, (str, Path)):
        cv_metrics = json.loads(Path(cv_metrics).read_text())
    write_card(weights, spec, config=result.config, small=small, image_size=image_size, epochs=epochs,
               seed=seed, n_train=len(data), labels=data.labels, history=result.history, cv=cv_metrics,
               command=command, data_dir=data_dir,
               train_seconds=sum(h["seconds"] for h in result.history),
               report=cv_report)
    return weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ichnode.training.classify",
                                description="Train a 2D slice classifier on head-ct-png (all images).")
    p.add_argument("model", help="registry name or seed (004 / 003 / 001)")
    p.add_argument("--data", required=True, help="head-ct-png folder (labels.csv + images/)")
    p.add_argument("--out", required=True, help="output folder (weights, <name>.json, model card)")
    p.add_argument("--work", default=None, help="checkpoint folder (default: --out)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paper-size", action="store_true", help="paper configuration instead of the small one")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--cv-metrics", help="metrics.json of a cross-validation run, quoted in the model card")
    p.add_argument("--cv-report", help="path of the cross-validation report, named in the model card")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on the CPU")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    command = "python -m ichnode.training.classify " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))
    path = train_classifier(a.model, a.data, a.out, epochs=a.epochs, image_size=a.image_size,
                            small=not a.paper_size, seed=a.seed, resume=not a.no_resume,
                            cv_metrics=a.cv_metrics, cv_report=a.cv_report, command=command,
                            checkpoint_dir=a.work)
    print(path)
    return 0


def cli(model: str, argv: list[str]) -> int:
    """``ichnode train MODEL ...``: this module's command line for a 2D slice classifier."""
    return main([model, *argv])


if __name__ == "__main__":
    raise SystemExit(main())
