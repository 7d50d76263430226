"""The one HU -> input path (ichnode.models.inputs through the registry) gives what serving gave before.

``_old_*`` below are frozen copies of the serving functions this path replaced (``classifier_inputs``,
``dense_unet_inputs``, ``resnet3d_inputs`` and ``_to_native`` of ichnode.infer.deep, as of commit fa25885),
kept here so that any numerical change to the inputs of the shipped weights fails a test.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ichnode.models import inputs
from ichnode.models import preprocess as pp
from ichnode.models.registry import get

CLASSIFIERS = ("resnet50_cls", "dtvit", "vgg_wso")


# ----------------------------------------------------------------------- frozen old serving path
def _old_pad_square(stack, fill=-1000.0):
    b, h, w = stack.shape
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    if h == w:
        return stack, (0, 0, h, w)
    out = np.full((b, s, s), fill, dtype=np.float32)
    out[:, top:top + h, left:left + w] = stack
    return out, (top, left, h, w)


def _old_pseudo_hu(hu):
    lo, hi = (0.0, 80.0)
    v = np.rint((np.clip(np.asarray(hu, np.float32), lo, hi) - lo) / (hi - lo) * 255.0)
    return (v / np.float32(255.0) * np.float32(hi - lo) + np.float32(lo)).astype(np.float32)


def _old_classifier_inputs(name, hu_slices, size):
    hu, _ = _old_pad_square(np.asarray(hu_slices, np.float32))
    x = pp.resize(_old_pseudo_hu(hu), (size, size))
    if name == "vgg_wso":
        return x[:, None]
    x = pp.window(x, 0.0, 80.0)[:, None]
    x = np.repeat(x, 3, axis=1)
    if name == "resnet50_cls":
        return x
    return pp.imagenet_normalize(x)


def _old_dense_unet_inputs(hu_slices, size):
    hu, _ = _old_pad_square(np.asarray(hu_slices, np.float32))
    return pp.resize(pp.window(hu, 0.0, 80.0), (size, size))[:, None]


def _old_resnet3d_inputs(hu_volume, size):
    d, h, w = (int(v) for v in size)
    x = pp.window(np.asarray(hu_volume, np.float32), 40.0, 110.0)
    x, bbox = pp.crop_blank_border(x, threshold=0.0, margin=2, largest_component=True)
    x = pp.resize(x, (h, w), mode="linear")
    return pp.resize(x, (d, h, w), mode="linear")[None], bbox


def _old_to_native(maps, pad, square):
    top, left, h, w = pad
    if maps.shape[-1] != square:
        maps = F.interpolate(maps, size=(square, square), mode="bilinear", align_corners=False)
    return maps[..., top:top + h, left:left + w]


# ---------------------------------------------------------------------------------- fixtures
def _head_volume(shape=(6, 40, 56), seed=0) -> np.ndarray:
    """Seeded synthetic head: air, skull ring, brain with noise, a bright blob; non-square slices."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    z, y, x = np.mgrid[:nz, :ny, :nx]
    r = np.hypot((y - ny / 2) / (ny * 0.4), (x - nx / 2) / (nx * 0.4))
    hu = np.full(shape, -1000.0, np.float32)
    hu[r < 1.0] = 900.0
    hu[r < 0.85] = 30.0
    hu += rng.normal(0.0, 6.0, shape).astype(np.float32) * (r < 1.0)
    hu[(np.hypot(y - ny / 2 - 4, x - nx / 2 + 6) < 5) & (z >= 2) & (z <= 4)] = 65.0
    return hu


# ---------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_inputs_unchanged(name) -> None:
    hu = _head_volume()
    got = get(name).input.hu_to_input(hu, (32, 32)).array
    np.testing.assert_array_equal(got, _old_classifier_inputs(name, hu, 32))


def test_dense_unet_input_unchanged() -> None:
    hu = _head_volume()
    got = get("dense_unet").input.hu_to_input(hu, (64, 64)).array
    np.testing.assert_array_equal(got, _old_dense_unet_inputs(hu, 64))


def test_resnet3d_input_unchanged() -> None:
    hu = np.pad(_head_volume((10, 48, 48)), ((2, 2), (3, 1), (5, 0)), constant_values=-1000.0)
    x = get("resnet3d_multitask").input.hu_to_input(hu, (8, 16, 16))
    old, bbox = _old_resnet3d_inputs(hu, (8, 16, 16))
    np.testing.assert_array_equal(x.array, old[None])
    assert x.field_of_view == tuple(s.indices(n)[:2] for s, n in zip(bbox, hu.shape))
    assert x.field_of_view != tuple((0, n) for n in hu.shape)  # the border really was cropped


@pytest.mark.parametrize("shape", [(3, 40, 56), (3, 56, 40), (3, 48, 48)])
def test_maps_back_on_padded_slices_as_before(shape) -> None:
    hu = np.zeros(shape, np.float32)
    x = get("dense_unet").input.hu_to_input(hu, (32, 32))
    maps = torch.rand(shape[0], 5, 32, 32, generator=torch.Generator().manual_seed(1))
    _, pad = _old_pad_square(hu)
    torch.testing.assert_close(x.to_native(maps, shape[1:]), _old_to_native(maps, pad, max(shape[1:])),
                               rtol=0, atol=0)


def test_maps_back_on_a_cropped_volume() -> None:
    hu = np.full((10, 30, 30), -1000.0, np.float32)
    hu[2:8, 5:25, 8:20] = 80.0
    x = get("resnet3d_multitask").input.hu_to_input(hu, (4, 8, 8))
    native = x.to_native(torch.ones(1, 1, 4, 8, 8), hu.shape)[0, 0].numpy()
    inside = tuple(slice(a, b) for a, b in x.field_of_view)
    assert native.shape == hu.shape
    np.testing.assert_allclose(native[inside], 1.0)
    assert native.sum() == pytest.approx(native[inside].size)  # zero outside the cropped box


def test_block_cropped_then_resized() -> None:
    vol = np.full((12, 64, 64), -1000.0, np.float32)
    vol[2:10, 16:48, 8:56] = 80.0  # head-sized block, blank border all around
    x = get("resnet3d_multitask").input.hu_to_input(vol).array
    assert x.shape == (1, 1, 32, 224, 224) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1
    assert x[0, 0, 16, 112, 112] == pytest.approx(40 / 70, abs=1e-5)  # (80 - 40) / (110 - 40)
    # the 2-voxel margin of air is all that is left of the border
    assert x[0, 0, 16, 112, 0] < 0.1 and x[0, 0, 16, 112, 20] == pytest.approx(40 / 70, abs=1e-3)


def test_eight_bit_window_is_idempotent_on_png_levels() -> None:
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0) * np.float32(80.0)
    np.testing.assert_array_equal(inputs.eight_bit_brain_window(levels), levels)
    clipped = inputs.eight_bit_brain_window(np.array([-1000.0, 40.1, 3000.0]))
    assert clipped.tolist() == pytest.approx([0.0, 128 / 255 * 80, 80.0], abs=1e-5)  # 40.1 HU -> level 128


def test_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        get("vgg_wso").input.hu_to_input(np.zeros((1, 32, 32)), (40, 40))
    with pytest.raises(ValueError):
        get("resnet3d_multitask").input.hu_to_input(np.zeros((4, 8, 8)), (8, 8))
    with pytest.raises(ValueError, match="stack of slices"):
        get("resnet50_cls").input.hu_to_input(np.zeros((32, 32)), (32, 32))
