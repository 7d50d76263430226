"""Seed 002 (Dense U-Net) training on 2D slices of synthetic phantoms (``ichnode.training.synthetic``).

Recipe (:data:`RECIPE`, the default): the paper's - binary cross-entropy on one sigmoid channel per class,
SGD with learning rate 1e-3 - plus what the paper leaves open: momentum 0.9, batch 16, no weight decay,
random left-right flip of image and target together. The registry's small configuration, with
``num_classes`` = the classes trained (default IPH, IVH, SAH, SDH, EDH). The output bias starts at the
log-odds of each class's pixel frequency in the training slices (prior initialisation, as in RetinaNet):
the loss is unchanged, the network just does not spend its first epochs learning that blood is rare.

The shipped weights deviate from the paper's optimiser (``--optimizer adam --width 0.5``): measured on
120 training / 20 validation phantoms (1136 / 196 slices), SGD at the paper's lr 1e-3 (momentum 0.9) gave
a validation Dice of 0.000 after 4 epochs at the small width 1/8; SGD lr 1e-2 and 1e-1 at width 1/4 and
1/2 gave 0.000 / 0.24 after 3-5 epochs; Adam lr 1e-3 at width 1/2 gave 0.47 after one epoch and 0.75
after five. With the CPU budget (minutes, not the paper's hours on a GPU) SGD does not get far enough.

Epochs and resumable checkpoints: the one training loop (``ichnode.training.loop``).

``python -m ichnode.training.segment --out ichnode/weights --work var/training/synthetic/002 ...`` trains
and writes ``dense_unet.pt`` + ``.json`` + ``.md`` (model card).
"""
from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ichnode.models.registry import get
from ichnode.training.classify import input_description, run_fields, save_weights, write_sidecar
from ichnode.training.loop import Log, default_device, jsonable, open_run, print_line, run_epochs, seeded_model
from ichnode.training.synthetic import SEG_CLASSES, SliceSet, build_slice_set, sample_specs


@dataclass(frozen=True)
class SegRecipe:
    optimizer: str = "sgd"  # paper
    lr: float = 1e-3  # paper
    momentum: float = 0.9  # not in the paper
    batch_size: int = 16
    loss: str = "bce"  # paper: binary cross-entropy
    flip: bool = True
    source: str = ("seed 002 (Xu et al. 2021): SGD, lr 1e-3, binary cross-entropy; momentum, batch and "
                   "flip chosen here")


RECIPE = SegRecipe()


@dataclass
class SegFitResult:
    model: nn.Module
    history: list[dict[str, Any]]
    config: dict[str, Any]
    resumed_from: int


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over classes and pixels (the paper's loss)."""
    return F.binary_cross_entropy_with_logits(logits, target)


@torch.no_grad()
def predict_slices(model: nn.Module, inputs: np.ndarray, batch_size: int = 32,
                   device: torch.device | None = None) -> np.ndarray:
    """Per-class sigmoid probabilities (N, C, S, S) float32 (eval mode)."""
    device = device or next(model.parameters()).device
    model.eval()
    x = torch.as_tensor(inputs)
    out = [torch.sigmoid(model(x[i:i + batch_size].to(device))["seg_logits"]).cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


def slice_dice(prob: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    """Dice of (any class >= threshold) vs (labels > 0), pooled over the given slices."""
    pred = prob.max(axis=1) >= threshold
    truth = labels > 0
    den = int(pred.sum()) + int(truth.sum())
    return 1.0 if den == 0 else 2.0 * int((pred & truth).sum()) / den


def fit_segmenter(
    train: SliceSet,
    *,
    epochs: int,
    checkpoint_dir: str | Path | None,
    seed: int = 0,
    resume: bool = True,
    recipe: SegRecipe = RECIPE,
    small: bool = True,
    val: SliceSet | None = None,
    device: torch.device | None = None,
    log: Log | None = print_line,
    overrides: dict[str, Any] | None = None,
) -> SegFitResult:
    """Train the Dense U-Net on ``train`` for ``epochs`` epochs (checkpointed in ``checkpoint_dir``)."""
    spec = get("dense_unet")
    log = log or (lambda _line: None)
    device = device or default_device()
    if epochs < 1 or len(train) == 0:
        raise ValueError("need epochs >= 1 and a non-empty training set")
    config = spec.config(small, num_classes=len(train.classes), **(overrides or {}))
    model = seeded_model(spec, config, seed, device)
    with torch.no_grad():  # prior initialisation of the output bias (see the module docstring)
        counts = np.bincount(train.labels.ravel(), minlength=len(train.classes) + 1)[1:]
        freq = (counts / train.labels.size).clip(1e-4, 0.5)
        model.head.bias.copy_(torch.from_numpy(np.log(freq / (1 - freq))).float())
    digest = hashlib.sha256(train.inputs.tobytes()[:1 << 20] + train.labels.tobytes()).hexdigest()[:16]
    meta = {"model": spec.name, "version": spec.version, "config": jsonable(config), "seed": seed,
            "image_size": train.image_size, "classes": list(train.classes), "data": digest,
            "n": len(train), "recipe": asdict(recipe)}
    run = open_run("dense_unet", model, optimizer=recipe.optimizer, lr=recipe.lr, momentum=recipe.momentum,
                   seed=seed, meta=meta, checkpoint_dir=checkpoint_dir, resume=resume, log=log)
    x_all = torch.from_numpy(train.inputs)
    y_all = torch.from_numpy(train.labels)
    class_ids = torch.arange(1, len(train.classes) + 1, dtype=torch.uint8)[None, :, None, None]
    n = len(train)
    if run.start == 0:
        log(f"dense_unet: {sum(p.numel() for p in model.parameters()):,} parameters, {n} slices at "
            f"{train.image_size} px, classes {', '.join(train.classes)}, {recipe.optimizer} lr {recipe.lr:g}"
            + (f" momentum {recipe.momentum:g}" if recipe.optimizer == "sgd" else "")
            + f", batch {recipe.batch_size}, {epochs} epochs, device {device}")

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x, y = x_all[idx], (y_all[idx][:, None] == class_ids).float()  # one channel per class
        if recipe.flip:
            flip = torch.rand(len(idx), generator=run.generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            y = torch.where(flip[:, None, None, None], y.flip(-1), y)
        return seg_loss(model(x.to(device))["seg_logits"], y.to(device))

    def epoch_metrics(model: nn.Module) -> tuple[dict[str, Any], str]:
        if val is None or not len(val):
            return {}, ""
        dice = slice_dice(predict_slices(model, val.inputs, device=device), val.labels)
        return {"val_dice": dice}, f" | val Dice (any class, {len(val)} slices) {dice:.3f}"

    run_epochs(run, n=n, batch_size=recipe.batch_size, epochs=epochs, batch_loss=batch_loss, log=log,
               epoch_metrics=epoch_metrics)
    return SegFitResult(model, run.history, config, run.start)


def train_segmenter(
    out_dir: str | Path,
    *,
    n_phantoms: int = 280,
    epochs: int = 12,
    image_size: int = 128,
    classes: tuple[str, ...] = SEG_CLASSES,
    seed: int = 0,
    recipe: SegRecipe = RECIPE,
    width: float | None = None,
    max_positive: int = 10,
    resume: bool = True,
    checkpoint_dir: str | Path | None = None,
    command: str | None = None,
    n_val: int = 0,
    log: Log | None = print_line,
    report: str | None = None,
) -> Path:
    """Sample ``n_phantoms`` training phantoms (seed ``seed``), train, and write ``dense_unet.pt`` +
    ``.json`` (build overrides, classes, image size) + ``.md`` (model card) into ``out_dir``."""
    from ichnode.training.cards import write_synthetic_card  # cards imports the training modules

    log = log or (lambda _line: None)
    out_dir = Path(out_dir)
    t0 = time.monotonic()
    specs = sample_specs(n_phantoms, seed)
    train = build_slice_set(specs, image_size, classes, max_positive=max_positive, seed=seed)
    val = None
    if n_val:
        from ichnode.training.synthetic import EVAL_SEED_START

        val = build_slice_set(sample_specs(n_val, seed + 1, seed_start=EVAL_SEED_START - 10_000),
                              image_size, classes, seed=seed + 1)
    log(f"dense_unet: {len(specs)} phantoms -> {len(train)} slices in {time.monotonic() - t0:.0f} s")
    work = checkpoint_dir or Path("var/training/synthetic/002")
    result = fit_segmenter(train, epochs=epochs, checkpoint_dir=work, seed=seed,
                           resume=resume, val=val, log=log, recipe=recipe,
                           overrides={"width": width} if width is not None else None)
    spec = get("dense_unet")
    weights = save_weights(result.model, out_dir / "dense_unet.pt")
    overrides = {k: v for k, v in result.config.items() if spec.small.get(k) != v}
    subtypes = sorted({s.subtype for s in specs})
    sidecar = {
        "model": spec.name, "seed": spec.seed, "version": spec.version, "small": True,
        "overrides": jsonable(overrides), "config": jsonable(result.config), "image_size": image_size,
        "classes": list(classes),
        "input": input_description(spec, (image_size, image_size)),
        "output": "seg_logits (B, C, S, S); sigmoid per class; label = argmax class where its p >= 0.5",
        "data": f"{n_phantoms} synthetic phantoms (ichnode.training.synthetic.sample_specs(n, seed={seed})), "
                f"subtypes {subtypes}; {len(train)} slices",
        **run_fields(result.history, recipe, epochs=epochs, seed=seed, n_train=len(train),
                     n_phantoms=n_phantoms, command=command),
    }
    write_sidecar(weights, sidecar)
    write_synthetic_card(weights, report=report)
    return weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ichnode.training.segment",
                                description="Train the seed 002 Dense U-Net on synthetic phantom slices.")
    p.add_argument("--out", required=True, help="output folder (dense_unet.pt, .json, model card)")
    p.add_argument("--work", default="var/training/synthetic/002",
                   help="checkpoint folder (default: var/training/synthetic/002; keep it out of ichnode/weights)")
    p.add_argument("--phantoms", type=int, default=280)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--classes", default=",".join(SEG_CLASSES), help="comma-separated, e.g. IPH,EDH,SDH")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=RECIPE.optimizer)
    p.add_argument("--lr", type=float, default=RECIPE.lr)
    p.add_argument("--momentum", type=float, default=RECIPE.momentum)
    p.add_argument("--width", type=float, default=None, help="width factor (registry small: 0.125)")
    p.add_argument("--max-positive", type=int, default=10, help="hemorrhage slices kept per phantom")
    p.add_argument("--val", type=int, default=0, help="validation phantoms (logged only, never used to choose)")
    p.add_argument("--report", default=None, help="evaluation report named in the model card")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on the CPU")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    command = "python -m ichnode.training.segment " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))
    path = train_segmenter(a.out, n_phantoms=a.phantoms, epochs=a.epochs, image_size=a.image_size,
                           classes=tuple(c.strip() for c in a.classes.split(",") if c.strip()), seed=a.seed,
                           recipe=SegRecipe(optimizer=a.optimizer, lr=a.lr, momentum=a.momentum),
                           width=a.width, max_positive=a.max_positive, resume=not a.no_resume,
                           checkpoint_dir=a.work, command=command, n_val=a.val,
                           report=a.report)
    print(path)
    return 0


def cli(model: str, argv: list[str]) -> int:
    """``ichnode train dense_unet ...``: this module's command line (it trains the Dense U-Net only)."""
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
