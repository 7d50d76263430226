"""`ichnode train|evaluate MODEL ...` run the modules the registry names for MODEL, with MODEL and the rest."""
from __future__ import annotations

import importlib

import pytest

from ichnode import cli
from ichnode.models.registry import get

EXPECTED = {  # model -> (trainer, evaluator)
    "resnet3d_multitask": ("regress3d", "evaluate_synthetic"),
    "dtvit": ("classify", "crossval"),
    "dense_unet": ("segment", "evaluate_synthetic"),
    "vgg_wso": ("classify", "crossval"),
    "resnet50_cls": ("classify", "crossval"),
}


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_command_runs_the_registry_module(monkeypatch, command, model) -> None:
    calls = []
    for short in set(sum(EXPECTED.values(), ())):
        module = importlib.import_module(f"ichnode.training.{short}")
        monkeypatch.setattr(module, "cli", lambda m, argv, short=short: calls.append((short, m, argv)) or 7)
    assert cli.main([command, get(model).seed, "--epochs", "1"]) == 7  # by seed: the name is passed on
    module = EXPECTED[model][0 if command == "train" else 1]
    assert calls == [(module, model, ["--epochs", "1"])]


def test_classifier_cli_passes_the_model_first(monkeypatch) -> None:
    from ichnode.training import classify, segment

    seen = []
    monkeypatch.setattr(classify, "main", lambda argv: seen.append(argv) or 0)
    monkeypatch.setattr(segment, "main", lambda argv: seen.append(argv) or 0)
    classify.cli("vgg_wso", ["--data", "d"])
    segment.cli("dense_unet", ["--out", "o"])
    assert seen == [["vgg_wso", "--data", "d"], ["--out", "o"]]
