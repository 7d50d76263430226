"""How each network is trained: the papers' recipes for the 2D slice classifiers, and which heads
their training data cannot train (used by the trainers and the model cards alike)."""
from __future__ import annotations

from dataclasses import dataclass

from ichnode.models.registry import ModelSpec, get


@dataclass(frozen=True)
class Recipe:
    optimizer: str  # "adam" | "sgd"
    lr: float
    batch_size: int
    loss: str  # "ce" | "ce+masked_ce" | "bce_any"
    paper_epochs: int
    momentum: float = 0.0
    step_size: int | None = None  # StepLR period in epochs (None: constant lr)
    gamma: float = 0.1
    augment: bool = True
    source: str = ""


RECIPES: dict[str, Recipe] = {
    "resnet50_cls": Recipe("adam", 1e-4, 16, "ce", 30,
                           source="seed 004 Table 1: Adam, batch 16, lr 0.0001, 30 epochs, categorical CE"),
    "dtvit": Recipe("sgd", 0.01, 8, "ce+masked_ce", 50,
                    source="seed 001 section 3: SGD, lr 0.01, batch 8 (non-augmented set), 50 epochs"),
    "vgg_wso": Recipe("adam", 1e-3, 8, "bce_any", 20, step_size=5, gamma=0.1,
                      source="seed 003 section 3: Adam, lr 0.001 /10 every 5 epochs, batch 8, 20 epochs"),
}


def recipe_for(spec: ModelSpec | str) -> Recipe:
    name = spec if isinstance(spec, str) else spec.name
    name = get(name).name
    if name not in RECIPES:
        raise ValueError(f"{name} is not a 2D slice classifier; trainable here: {', '.join(RECIPES)}")
    return RECIPES[name]


def untrained_head_flags(spec: ModelSpec) -> dict[str, bool]:
    """Sidecar flags of the heads that need labels this training data lacks (location, subtypes,
    prognosis): their loss is masked out, so they keep their random initialisation and report nothing."""
    return {head.trained_flag: False for head in spec.heads.needing_labels().values()}
