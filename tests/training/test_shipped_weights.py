"""The weights shipped in ichnode/weights/ load into the registry's small configuration."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from ichnode.models.registry import get
from ichnode.training import WEIGHTS_DIR, load_shipped, weights_path

SHAPES = {
    "resnet50_cls": {"logits": (2, 2)},
    "dtvit": {"ich_logits": (2, 2), "location_logits": (2, 3)},
    "vgg_wso": {"logits": (2, 6)},
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shipped_weights_load_and_run(name) -> None:
    path = weights_path(name)
    assert path.parent == WEIGHTS_DIR and path.exists(), f"missing shipped weights {path}"
    assert path.stat().st_size <= 5 * 1024 * 1024
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    spec = get(name)
    assert meta["small"] is True and meta["version"] == spec.version
    model = spec.build(small=True, **meta["overrides"])
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    model, _ = load_shipped(name)
    size = meta["image_size"]
    x = torch.rand(2, spec.input.small_shape[0], size, size) * (80.0 if name == "vgg_wso" else 1.0)
    with torch.no_grad():
        out = model(x)
    for key, shape in SHAPES[name].items():
        assert tuple(out[key].shape) == shape and torch.isfinite(out[key]).all()
    card = path.with_suffix(".md").read_text()
    assert "Not for clinical use" in card and spec.version in card and "cross-validation" in card


@pytest.mark.parametrize("name", ["resnet3d_multitask", "dtvit", "dense_unet", "vgg_wso", "resnet50_cls"])
def test_untrained_heads_say_so_in_sidecar_and_card(name) -> None:
    """Every head that needs labels the shipped training data lacks is flagged false and the card says it
    reports nothing; a trained head is not called untrained."""
    path = weights_path(name)
    meta = json.loads(path.with_suffix(".json").read_text())
    card = path.with_suffix(".md").read_text()
    spec = get(name)
    for role, head in spec.heads.needing_labels().items():
        assert meta[head.trained_flag] is False
        assert f"Not reported: the {role} head" in card and "nothing of it reaches the SR" in card
    assert card.count("Not reported:") == len(spec.heads.needing_labels())
    assert "hu_to_input" in meta["input"] and "hu_to_input" in card
