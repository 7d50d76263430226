"""Seed 000 (multi-task 3D ResNet-34) training on whole synthetic phantoms: hematoma volume regression.

The paper's loss is MSE on the cube root of the hematoma volume (in mm, i.e. ``cbrt(mm^3)``) plus binary
cross-entropy on death. Phantoms have an exact volume but no outcome, so the BCE term is computed over the
samples that have a prognosis label - here none - and contributes exactly 0: **the prognosis head stays
at its random initialisation** and the adapter does not report it (sidecar ``"prognosis_trained":
false``). Optimiser: SGD (the paper: lr 1e-4) - see :data:`RECIPE`; the volume head's bias starts at the
mean training target (the loss is unchanged; it skips the phase where the network learns the mean), and
after the last epoch the batch-norm statistics are re-estimated over the training set
(:func:`recalibrate_batchnorm`: without it the eval-mode output jumped by tens of mL between epochs).

Inputs come from the registry's ``get("resnet3d_multitask").input.hu_to_input`` (the path the engine serves
with, ``ichnode.models.inputs``): window [40, 110] HU -> [0, 1], blank border cropped, resized to
``input_size`` (default 32 x 64 x 64 for the CPU budget; the paper uses 32 x 224 x 224). Augmentation:
random left-right flip.

Epochs and resumable checkpoints: the one training loop (``ichnode.training.loop``).
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
from ichnode.models.resnet3d_multitask import cbrt_mm_to_ml, ml_to_cbrt_mm
from ichnode.training.classify import input_description, run_fields, save_weights, write_sidecar
from ichnode.training.loop import Log, default_device, jsonable, open_run, print_line, run_epochs, seeded_model
from ichnode.training.recipes import untrained_head_flags
from ichnode.training.synthetic import VolumeSet, build_volume_set, sample_specs


@dataclass(frozen=True)
class RegRecipe:
    optimizer: str = "sgd"  # paper
    lr: float = 1e-4  # paper
    momentum: float = 0.9  # not in the paper
    batch_size: int = 8
    flip: bool = True
    source: str = "seed 000 (Gong et al. 2023): SGD, lr 1e-4, MSE (cube root of volume) + BCE (death), 300 epochs"


RECIPE = RegRecipe()


@dataclass
class RegFitResult:
    model: nn.Module
    history: list[dict[str, Any]]
    config: dict[str, Any]
    resumed_from: int


def multitask_loss(out: dict[str, torch.Tensor], volume_cbrt: torch.Tensor,
                   death: torch.Tensor | None = None) -> torch.Tensor:
    """MSE(volume cube root) + BCE(death) over the samples with a death label (>= 0); with none the BCE
    term is exactly 0 (still in the graph)."""
    loss = F.mse_loss(out["volume_cbrt"], volume_cbrt)
    if death is not None:
        keep = death >= 0
        if bool(keep.any()):
            return loss + F.binary_cross_entropy_with_logits(out["prognosis_logit"][keep], death[keep].float())
    return loss + out["prognosis_logit"].sum() * 0.0


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, inputs: np.ndarray | torch.Tensor, batch_size: int = 8,
                          device: torch.device | None = None) -> None:
    """Re-estimate every BatchNorm's running mean / variance as the plain average over ``inputs`` (one
    pass in train mode, no gradient, weights untouched). The running averages kept during training lag
    behind weights that still move; with small batches of very different volumes that made the eval-mode
    output of this network jump between epochs. Leaves the model in eval mode."""
    device = device or next(model.parameters()).device
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    x = torch.as_tensor(inputs)
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size].to(device))
    for m, mom in zip(norms, saved):
        m.momentum = mom
    model.eval()


@torch.no_grad()
def predict_volumes(model: nn.Module, inputs: np.ndarray, batch_size: int = 8,
                    device: torch.device | None = None) -> np.ndarray:
    """Predicted hematoma volume (mL) per prepared input."""
    device = device or next(model.parameters()).device
    model.eval()
    x = torch.as_tensor(inputs)
    out = [cbrt_mm_to_ml(model(x[i:i + batch_size].to(device))["volume_cbrt"].float()).cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.float64)


def fit_volume_regressor(
    train: VolumeSet,
    *,
    epochs: int,
    checkpoint_dir: str | Path | None,
    seed: int = 0,
    resume: bool = True,
    recipe: RegRecipe = RECIPE,
    small: bool = True,
    val: VolumeSet | None = None,
    device: torch.device | None = None,
    log: Log | None = print_line,
    overrides: dict[str, Any] | None = None,
) -> RegFitResult:
    spec = get("resnet3d_multitask")
    log = log or (lambda _line: None)
    device = device or default_device()
    if epochs < 1 or len(train) == 0:
        raise ValueError("need epochs >= 1 and a non-empty training set")
    config = spec.config(small, **(overrides or {}))
    model = seeded_model(spec, config, seed, device)
    y_all = ml_to_cbrt_mm(torch.from_numpy(train.volume_ml))
    with torch.no_grad():
        model.volume_head.bias.fill_(float(y_all.mean()))
    digest = hashlib.sha256(train.inputs.tobytes()[:1 << 20] + train.volume_ml.tobytes()).hexdigest()[:16]
    meta = {"model": spec.name, "version": spec.version, "config": jsonable(config), "seed": seed,
            "input_size": list(train.input_size), "data": digest, "n": len(train), "recipe": asdict(recipe)}
    run = open_run("resnet3d_multitask", model, optimizer=recipe.optimizer, lr=recipe.lr, momentum=recipe.momentum,
                   seed=seed, meta=meta, checkpoint_dir=checkpoint_dir, resume=resume, log=log)
    x_all = torch.from_numpy(train.inputs)
    death = torch.full((len(train),), -1, dtype=torch.long)  # phantoms have no outcome labels
    n = len(train)
    if run.start == 0:
        log(f"resnet3d_multitask: {sum(p.numel() for p in model.parameters()):,} parameters, {n} volumes at "
            f"{'x'.join(map(str, train.input_size))}, {recipe.optimizer} lr {recipe.lr:g}, batch "
            f"{recipe.batch_size}, {epochs} epochs, device {device}")

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x = x_all[idx]
        if recipe.flip:
            flip = torch.rand(len(idx), generator=run.generator) < 0.5
            x = torch.where(flip[:, None, None, None, None], x.flip(-1), x)
        return multitask_loss(model(x.to(device)), y_all[idx].to(device), death[idx].to(device))

    def epoch_metrics(model: nn.Module) -> tuple[dict[str, Any], str]:
        if val is None or not len(val):
            return {}, ""
        mae = float(np.mean(np.abs(predict_volumes(model, val.inputs, device=device) - val.volume_ml)))
        return {"val_mae_ml": mae}, f" | val MAE {mae:.2f} mL ({len(val)} volumes)"

    run_epochs(run, n=n, batch_size=recipe.batch_size, epochs=epochs, batch_loss=batch_loss, log=log,
               epoch_metrics=epoch_metrics)
    recalibrate_batchnorm(model, train.inputs, recipe.batch_size, device)  # deterministic: same data, order
    if val is not None and len(val):
        mae = float(np.mean(np.abs(predict_volumes(model, val.inputs, device=device) - val.volume_ml)))
        run.history[-1]["val_mae_ml_recalibrated"] = mae
        log(f"resnet3d_multitask: batch-norm statistics re-estimated on the training set | val MAE {mae:.2f} mL")
    return RegFitResult(model, run.history, config, run.start)


def train_volume_regressor(
    out_dir: str | Path,
    *,
    n_phantoms: int = 420,
    epochs: int = 30,
    input_size: tuple[int, int, int] = (32, 64, 64),
    seed: int = 0,
    recipe: RegRecipe = RECIPE,
    resume: bool = True,
    checkpoint_dir: str | Path | None = None,
    command: str | None = None,
    n_val: int = 0,
    log: Log | None = print_line,
    report: str | None = None,
) -> Path:
    """Sample ``n_phantoms`` phantoms, train, write ``resnet3d_multitask.pt`` + ``.json`` + ``.md``."""
    from ichnode.training.cards import write_synthetic_card
    from ichnode.training.synthetic import EVAL_SEED_START

    log = log or (lambda _line: None)
    out_dir = Path(out_dir)
    t0 = time.monotonic()
    specs = sample_specs(n_phantoms, seed + 100)
    train = build_volume_set(specs, input_size)
    val = (build_volume_set(sample_specs(n_val, seed + 101, seed_start=EVAL_SEED_START - 20_000), input_size)
           if n_val else None)
    log(f"resnet3d_multitask: {len(specs)} phantoms prepared in {time.monotonic() - t0:.0f} s")
    work = checkpoint_dir or Path("var/training/synthetic/000")
    result = fit_volume_regressor(train, epochs=epochs, checkpoint_dir=work, seed=seed,
                                  recipe=recipe, resume=resume, val=val, log=log)
    spec = get("resnet3d_multitask")
    weights = save_weights(result.model, out_dir / "resnet3d_multitask.pt")
    overrides = {k: v for k, v in result.config.items() if spec.small.get(k) != v}
    sidecar = {
        "model": spec.name, "seed": spec.seed, "version": spec.version, "small": True,
        "overrides": jsonable(overrides), "config": jsonable(result.config),
        "input_size": list(train.input_size),
        "input": input_description(spec, train.input_size),
        "output": f"{spec.heads.volume.meaning}; prognosis_logit UNTRAINED (no outcome labels): not reported",
        **untrained_head_flags(spec),
        "data": f"{n_phantoms} synthetic phantoms (ichnode.training.synthetic.sample_specs(n, seed={seed + 100})), "
                f"volumes {float(train.volume_ml.min()):.1f}-{float(train.volume_ml.max()):.1f} mL",
        **run_fields(result.history, recipe, epochs=epochs, seed=seed, n_train=len(train),
                     n_phantoms=n_phantoms, command=command),
    }
    write_sidecar(weights, sidecar)
    write_synthetic_card(weights, report=report)
    return weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ichnode.training.regress3d",
                                description="Train the seed 000 3D ResNet volume regressor on synthetic phantoms.")
    p.add_argument("--out", required=True, help="output folder (resnet3d_multitask.pt, .json, model card)")
    p.add_argument("--work", default="var/training/synthetic/000",
                   help="checkpoint folder (default: var/training/synthetic/000; keep it out of ichnode/weights)")
    p.add_argument("--phantoms", type=int, default=420)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--input-size", default="32,64,64", help="D,H,W")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=RECIPE.optimizer)
    p.add_argument("--lr", type=float, default=RECIPE.lr)
    p.add_argument("--momentum", type=float, default=RECIPE.momentum)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val", type=int, default=0, help="validation phantoms (logged only)")
    p.add_argument("--report", default=None, help="evaluation report named in the model card")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    command = "python -m ichnode.training.regress3d " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))
    size = tuple(int(v) for v in a.input_size.split(","))
    recipe = RegRecipe(optimizer=a.optimizer, lr=a.lr, momentum=a.momentum)
    path = train_volume_regressor(a.out, n_phantoms=a.phantoms, epochs=a.epochs, input_size=size, seed=a.seed,
                                  recipe=recipe, resume=not a.no_resume, checkpoint_dir=a.work,
                                  command=command, n_val=a.val, report=a.report)
    print(path)
    return 0


def cli(model: str, argv: list[str]) -> int:
    """``ichnode train resnet3d_multitask ...``: this module's command line (it trains seed 000 only)."""
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
