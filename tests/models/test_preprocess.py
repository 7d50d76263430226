"""Preprocessing steps: windows, blank-border crop, fixation-device removal, resizing (pipelines: test_inputs)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ichnode.models import preprocess as pp


def test_window_40_110_to_unit_range():
    hu = np.array([-1000.0, 0.0, 40.0, 75.0, 110.0, 3000.0])
    out = pp.window(hu, 40, 110)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 0, 0.5, 1, 1], atol=1e-6)


def test_window_center_width_and_bad_window():
    hu = np.linspace(-100, 200, 31)
    np.testing.assert_array_equal(pp.window_center_width(hu, 40, 80), pp.window(hu, 0, 80))
    with pytest.raises(ValueError):
        pp.window(hu, 50, 50)


def test_crop_blank_border_2d_and_margin():
    img = np.zeros((20, 30), np.float32)
    img[4:9, 10:22] = 1.0
    cropped, bbox = pp.crop_blank_border(img)
    assert cropped.shape == (5, 12) and bbox == (slice(4, 9), slice(10, 22))
    cropped, _ = pp.crop_blank_border(img, margin=2)
    assert cropped.shape == (9, 16)
    cropped, _ = pp.crop_blank_border(img, margin=100)
    assert cropped.shape == img.shape


def test_crop_blank_border_3d_axes_and_largest_component():
    vol = np.zeros((6, 20, 20), np.float32)
    vol[1:5, 5:15, 6:12] = 1.0
    vol[0, 0, 19] = 1.0  # a speck in a corner
    _, bbox = pp.crop_blank_border(vol)
    assert bbox == (slice(0, 5), slice(0, 15), slice(6, 20))
    _, bbox = pp.crop_blank_border(vol, largest_component=True)
    assert bbox == (slice(1, 5), slice(5, 15), slice(6, 12))
    cropped, bbox = pp.crop_blank_border(vol, axes=(-2, -1), largest_component=True)
    assert cropped.shape == (6, 10, 6) and bbox[0] == slice(None)


def test_crop_all_blank_keeps_everything():
    img = np.zeros((8, 8))
    cropped, _ = pp.crop_blank_border(img)
    assert cropped.shape == (8, 8)


def _head_with_device(n: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:n, :n]
    img = np.full((n, n), -1000.0, np.float32)
    r = np.hypot((yy - 56) / 40.0, (xx - 64) / 34.0)
    head = r <= 1.0
    img[head] = 30.0  # brain
    img[(r > 0.9) & head] = 1000.0  # skull
    bar = (yy >= 104) & (yy < 110) & (xx >= 30) & (xx < 98)  # bright head holder below the head
    img[bar] = 1000.0
    bridge = (yy >= 95) & (yy < 104) & (xx >= 63) & (xx < 65)  # thin strap touching the head
    img[bridge & ~head] = 200.0
    return img, head, bar


def test_fixation_device_removed():
    img, head, bar = _head_with_device()
    assert (pp.window(img, 40, 110)[bar] == 1).all()  # the bar is as bright as bone before
    out = pp.remove_fixation_device(img, threshold=-300, erosion_radius=3, background=-1000)
    assert (out[bar] == -1000).all()  # bar gone
    near_head = ndimage.binary_dilation(head, structure=pp.disk(3))
    assert (out[~near_head] == -1000).all()  # strap gone too (but a stub shorter than the disk radius)
    np.testing.assert_array_equal(out[head], img[head])  # head untouched


def test_head_mask_fills_dark_inside():
    img, head, _ = _head_with_device()
    img[50:60, 60:70] = -1000.0  # air inside the skull (e.g. a sinus) stays in the mask
    mask = pp.head_mask(img, threshold=-300, erosion_radius=3)
    assert mask[55, 65] and mask[head].all()


def test_resize_and_channels():
    x = np.full((1, 40, 60), 0.25, np.float32)
    out = pp.resize(x, (20, 30))
    assert out.shape == (1, 20, 30) and np.allclose(out, 0.25)
    vol = np.random.default_rng(0).random((10, 40, 40)).astype(np.float32)
    assert pp.resize(vol, (32, 16, 16)).shape == (32, 16, 16)
    three = pp.to_three_channels(np.zeros((8, 8)))
    assert three.shape == (3, 8, 8)
    assert pp.center_crop(np.zeros((3, 10, 12)), (8, 8)).shape == (3, 8, 8)
    assert pp.center_crop(np.zeros((6, 6)), (8, 8)).shape == (8, 8)


def test_imagenet_normalize():
    x = np.ones((3, 4, 4), np.float32)
    out = pp.imagenet_normalize(x * np.asarray(pp.IMAGENET_MEAN, np.float32).reshape(3, 1, 1))
    np.testing.assert_allclose(out, 0, atol=1e-6)
    with pytest.raises(ValueError):
        pp.imagenet_normalize(np.ones((1, 4, 4)))
