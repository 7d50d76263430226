"""Training and evaluation of the 2D slice classifiers (seeds 001, 003, 004) on the head-ct-png set.

* :func:`train_classifier` - train on every labelled image, write weights + model card
  (``ichnode train MODEL --data ... --out ...``);
* :func:`crossvalidate` - stratified k-fold cross-validation with a report
  (``ichnode evaluate MODEL --data ...``);
* :mod:`~ichnode.training.metrics` (numpy metrics), :mod:`~ichnode.training.plots` (PIL plots),
  :mod:`~ichnode.training.png_dataset` (the PNG reader), :mod:`~ichnode.training.cards` (model cards).

The exact commands behind ``docs/models/`` and ``ichnode/weights/`` are in ``reproduce.sh`` here.
Shipped weights live in ``ichnode/weights/`` (see :func:`weights_path`, :func:`load_shipped`).
Attributes are imported lazily so ``python -m ichnode.training.crossval`` runs without a warning.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"

_LAZY = {
    "RECIPES": "ichnode.training.classify",
    "fit": "ichnode.training.classify",
    "predict": "ichnode.training.classify",
    "train_classifier": "ichnode.training.classify",
    "crossvalidate": "ichnode.training.crossval",
    "stratified_folds": "ichnode.training.crossval",
    "train_segmenter": "ichnode.training.segment",
    "train_volume_regressor": "ichnode.training.regress3d",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def weights_path(model_name: str) -> Path:
    """Path of the shipped weights of ``model_name`` (registry name or seed); may not exist."""
    from ichnode.models.registry import get

    return WEIGHTS_DIR / f"{get(model_name).name}.pt"


def load_shipped(model_name: str, map_location: str = "cpu"):
    """(model in eval mode, sidecar dict) for the shipped weights: the registry's small configuration with
    the overrides recorded in ``<name>.json`` (e.g. the ViT's ``img_size``)."""
    import torch

    from ichnode.models.registry import get

    spec = get(model_name)
    path = weights_path(spec.name)
    if not path.exists():
        raise FileNotFoundError(f"no shipped weights for {spec.name} ({path})")
    meta = json.loads(path.with_suffix(".json").read_text())
    model = spec.build(small=meta["small"], **meta["overrides"])
    model.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    return model.eval(), meta


__all__ = ["RECIPES", "WEIGHTS_DIR", "crossvalidate", "fit", "load_shipped", "predict", "stratified_folds",
           "train_classifier", "train_segmenter", "train_volume_regressor", "weights_path"]
