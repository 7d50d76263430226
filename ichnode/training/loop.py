"""The one training loop of every model (classify.fit, segment.fit_segmenter,
regress3d.fit_volume_regressor), and its checkpoints.

An epoch is a seeded permutation of the training set, one optimiser step per batch (the model's
own `batch_loss`), the scheduler's step, the model's epoch metrics, and a checkpoint written
atomically: model, optimiser and scheduler state, finished epochs, the RNG states (torch CPU, CUDA
when present, Python's `random` and the data-order/augmentation generator) and the history. So an
interrupted run resumes bit for bit where it stopped. Checkpoints load with
`torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT = "checkpoint.pt"
Log = Callable[[str], None]
# After an epoch: (model) -> (columns for the history row, text for the log line).
EpochMetrics = Callable[[nn.Module], tuple[dict[str, Any], str]]


def print_line(line: str) -> None:
    print(line, flush=True)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def jsonable(obj: Any) -> Any:
    """Tuples -> lists, recursively (configs hold tuples; JSON and the checkpoint meta want lists)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def make_optimizer(name: str, model: nn.Module, lr: float, momentum: float = 0.0) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}")


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def resume_state(ckpt: Path | None, resume: bool, meta: dict, model: nn.Module, optimizer,
                 generator: torch.Generator, log: Log, name: str,
                 scheduler=None) -> tuple[list[dict[str, Any]], int]:
    """(history, epochs done) restored from ckpt when it holds this same run (meta); ([], 0) when
    there is none or resume is off. Model, optimiser, scheduler and RNG states are restored in place."""
    if ckpt is None or not ckpt.exists() or not resume:
        return [], 0
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    if state["meta"] != meta:
        raise ValueError(f"{ckpt} belongs to a different run (model/config/seed/data differ); "
                         "delete it or pass resume=False")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"], generator)
    start = int(state["epoch"])
    log(f"{name}: resumed from {ckpt} after epoch {start}")
    return list(state["history"]), start


def seeded_model(spec, config: dict[str, Any], seed: int, device: torch.device) -> nn.Module:
    """The registry network built right after seeding torch and `random` (so its initialisation is
    the seed's)."""
    torch.manual_seed(seed)
    random.seed(seed)
    return spec.builder(**config).to(device)


@dataclass
class Run:
    """One training run's state: what run_epochs advances and its checkpoint restores."""
    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    scheduler: Any
    meta: dict
    ckpt: Path | None
    history: list[dict[str, Any]]
    start: int


def open_run(name: str, model: nn.Module, *, optimizer: str, lr: float, momentum: float, seed: int,
             meta: dict, checkpoint_dir: str | Path | None, resume: bool, log: Log,
             scheduler: Callable[[torch.optim.Optimizer], Any] | None = None) -> Run:
    """The optimiser, the data generator (seed + 1) and, when checkpoint_dir holds this same run
    (meta), the state it stopped in."""
    generator = torch.Generator().manual_seed(seed + 1)
    opt = make_optimizer(optimizer, model, lr, momentum)
    sched = scheduler(opt) if scheduler is not None else None
    ckpt = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    history, start = resume_state(ckpt, resume, meta, model, opt, generator, log, name, sched)
    return Run(name, model, opt, generator, sched, meta, ckpt, history, start)


def run_epochs(run: Run, *, n: int, batch_size: int, epochs: int,
               batch_loss: Callable[[torch.Tensor], torch.Tensor], log: Log,
               epoch_metrics: EpochMetrics | None = None) -> None:
    """Epochs run.start..epochs-1; batch_loss(indices) -> the mean loss of that batch (it draws its
    own augmentation from run.generator, after the epoch's permutation)."""
    name, model, optimizer, generator, scheduler = run.name, run.model, run.optimizer, run.generator, run.scheduler
    history, meta, ckpt = run.history, run.meta, run.ckpt
    for epoch in range(run.start, epochs):
        t0 = time.monotonic()
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = batch_loss(idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "loss": total / n}
        line = f"{name} epoch {epoch + 1}/{epochs} lr {lr:.2g} loss {total / n:.5f}"
        if epoch_metrics is not None:
            columns, text = epoch_metrics(model)
            row.update(columns)
            line += text
        row["seconds"] = time.monotonic() - t0
        history.append(row)
        log(f"{line} | {row['seconds']:.1f} s")
        if ckpt is not None:
            save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict() if scheduler is not None else None,
                         "epoch": epoch + 1, "rng": rng_state(generator), "history": history,
                         "meta": meta}, ckpt)
    model.eval()
