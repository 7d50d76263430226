"""Registry: names, versions, configs and the expected input of every network."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ichnode.domain import ModelInfo
from ichnode.models import registry

NAMES = ("resnet3d_multitask", "dtvit", "dense_unet", "vgg_wso", "resnet50_cls")


def test_names_and_seeds():
    assert registry.names() == NAMES
    assert [registry.get(s).name for s in ("000", "001", "002", "003", "004")] == list(NAMES)
    with pytest.raises(KeyError):
        registry.get("unet")


@pytest.mark.parametrize("name", NAMES)
def test_spec(name):
    spec = registry.get(name)
    assert spec.info == ModelInfo(name, spec.version) and spec.version
    with pytest.raises(TypeError):
        spec.defaults["width"] = 2  # frozen
    assert spec.config(small=True, dropout=0.1)["dropout"] == 0.1
    m = spec.build(small=True).eval()
    with torch.no_grad():
        out = m(torch.rand(1, *spec.input.small_shape))
    assert tuple(out) == spec.outputs
    for key, classes in spec.class_names.items():
        assert out[key].shape[1] == len(classes)


@pytest.mark.parametrize("name", NAMES)
def test_hu_to_input_gives_expected_input(name):
    spec = registry.get(name)
    yy, xx = np.mgrid[:128, :128]
    slice_hu = np.where(np.hypot(yy - 64, xx - 64) < 50, 40.0, -1000.0).astype(np.float32)
    hu = np.repeat(slice_hu[None], 10, axis=0)  # 10 slices, or one volume of 10 slices
    x = spec.input.hu_to_input(hu).array
    n = 10 if spec.input.dims == 2 else 1
    assert x.shape == (n, *spec.input.shape) and x.dtype == np.float32
    small = spec.input.hu_to_input(hu, spec.input.small_shape[1:]).array
    with torch.no_grad():
        out = spec.build(small=True).eval()(torch.from_numpy(small[:2]))
    assert tuple(out) == spec.outputs


@pytest.mark.parametrize("name", NAMES)
def test_heads_read_outputs_of_the_network(name):
    spec = registry.get(name)
    with torch.no_grad():
        out = spec.build(small=True).eval()(torch.rand(2, *spec.input.small_shape))
    for role, head in spec.heads.present().items():
        assert head.output in spec.outputs
        value = head(out)
        assert value.shape[0] == 2 and torch.isfinite(value).all()
        if head.classes:
            assert value.shape[-1] == len(head.classes)
        if role in ("hemorrhage", "subtypes", "location", "prognosis"):
            assert ((0 <= value) & (value <= 1)).all()
    if spec.task == registry.SLICE_CLASSIFICATION:
        assert spec.heads.hemorrhage is not None and spec.input.dims == 2


def test_untrained_heads_need_their_flag_set_true():
    location = registry.get("dtvit").heads.location
    assert not location.trained({}) and not location.trained({"location_trained": False})
    assert not location.trained({"location_trained": "yes"})  # only a JSON true counts
    assert location.trained({"location_trained": True})
    heads = registry.get("resnet3d_multitask").heads
    assert list(heads.untrained({"prognosis_trained": False})) == ["prognosis"]
    assert heads.volume.trained({})  # trained with the network: no flag
    assert {n: list(registry.get(n).heads.needing_labels()) for n in NAMES} == {
        "resnet3d_multitask": ["prognosis"], "dtvit": ["location"], "dense_unet": [], "vgg_wso": ["subtypes"],
        "resnet50_cls": []}


def test_trained_size_from_sidecar():
    assert registry.get("vgg_wso").input.trained_size({"image_size": 128}) == (128, 128)
    assert registry.get("000").input.trained_size({"input_size": [32, 64, 64]}) == (32, 64, 64)


@pytest.mark.parametrize("name", NAMES)
def test_train_and_evaluate_modules_exist(name):
    import importlib

    spec = registry.get(name)
    for module in (spec.trainer, spec.evaluator):
        assert callable(importlib.import_module(module).cli)
