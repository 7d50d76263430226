"""Fixtures of the engine-adapter tests: one CPU thread, tiny random weights in tmp_path, a small phantom."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ichnode.models.registry import get
from ichnode.synth import SynthSpec, make_phantom

torch.set_num_threads(1)

# name -> (build overrides of the small configuration, sidecar extras)
TINY = {
    "resnet50_cls": ({}, {"image_size": 32}),
    "vgg_wso": ({}, {"image_size": 32}),
    "dtvit": ({"img_size": 32}, {"image_size": 32}),
    "dense_unet": ({"num_classes": 5}, {"image_size": 64, "classes": ["IPH", "IVH", "SAH", "SDH", "EDH"]}),
    "resnet3d_multitask": ({}, {"input_size": [8, 32, 32], "prognosis_trained": False}),
}


def write_tiny_weights(folder: Path, name: str, **extra) -> Path:
    """Random small-configuration weights + sidecar for ``name`` in ``folder``."""
    overrides, sidecar = TINY[name]
    torch.manual_seed(0)
    model = get(name).build(small=True, **overrides)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt"
    torch.save(model.state_dict(), path)
    meta = {"model": name, "small": True, "overrides": overrides, **sidecar, **extra}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    for name in TINY:
        write_tiny_weights(folder, name)
    return folder


@pytest.fixture(scope="session")
def phantom():
    return make_phantom(SynthSpec(subtype="iph", volume_ml=20.0, thickness_mm=10.0, matrix=64, seed=3))


@pytest.fixture(scope="session")
def volume(phantom):
    return phantom.to_volume()
