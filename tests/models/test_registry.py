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
def test_prepare_gives_expected_input(name):
    spec = registry.get(name)
    yy, xx = np.mgrid[:128, :128]
    slice_hu = np.where(np.hypot(yy - 64, xx - 64) < 50, 40.0, -1000.0).astype(np.float32)
    hu = np.repeat(slice_hu[None], 10, axis=0) if spec.input.dims == 3 else slice_hu
    x = spec.input.prepare(hu)
    assert x.shape == spec.input.shape and x.dtype == np.float32
