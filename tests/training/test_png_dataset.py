"""The head-ct-png reader on tiny PNGs written here."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ichnode.models.preprocess import IMAGENET_MEAN, IMAGENET_STD
from ichnode.models.registry import get
from ichnode.training import png_dataset as P


def test_read_grey_modes(tmp_path) -> None:
    a = np.array([[0, 128], [255, 64]], np.uint8)
    Image.fromarray(a).save(tmp_path / "l.png")
    Image.fromarray(a).convert("RGB").save(tmp_path / "rgb.png")
    rgba = np.dstack([a, a, a, np.array([[255, 255], [0, 255]], np.uint8)])  # one transparent pixel
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    for name in ("l.png", "rgb.png"):
        g = P.read_grey(tmp_path / name)
        assert g.dtype == np.float32 and g.shape == (2, 2)
        np.testing.assert_array_equal(g, a)
    g = P.read_grey(tmp_path / "rgba.png")
    np.testing.assert_array_equal(g, [[0, 128], [0, 64]])  # transparent -> black background


def test_grey_to_hu_inverts_the_brain_window_export() -> None:
    np.testing.assert_allclose(P.grey_to_hu(np.array([0.0, 127.5, 255.0])), [0.0, 40.0, 80.0])
    assert P.EXPORT_WINDOW == (0.0, 80.0)
    hu = np.linspace(0.0, 80.0, 11, dtype=np.float32)
    np.testing.assert_allclose(P.grey_to_hu(hu / 80 * 255), hu, atol=1e-5)  # export, then back


def test_prepare_is_the_registry_path_on_hu() -> None:
    grey = np.random.default_rng(0).integers(0, 256, (20, 30)).astype(np.float32)
    for name in ("004", "003", "001"):
        spec = get(name)
        expected = spec.input.hu_to_input(P.grey_to_hu(grey)[None], (32, 32)).array[0]
        np.testing.assert_array_equal(P.prepare(name, grey, 32), expected)
    with pytest.raises(ValueError, match="volumes"):
        P.prepare("000", grey, 32)


@pytest.mark.parametrize("name", ["resnet50_cls", "vgg_wso", "dtvit"])
def test_png_export_of_a_ct_slice_gives_the_ct_input(name) -> None:
    """A CT slice and its 8-bit brain-window export reach the network as the same input."""
    rng = np.random.default_rng(0)
    hu = rng.uniform(-200, 200, (48, 40)).astype(np.float32)
    grey = np.rint(np.clip(hu, 0, 80) / 80 * 255)  # the export with the brain window
    ct = get(name).input.hu_to_input(hu[None], (32, 32)).array[0]
    np.testing.assert_array_equal(P.prepare(name, grey, 32), ct)


def test_prepare_per_network() -> None:
    grey = np.full((20, 30), 255.0, np.float32)
    grey[:, :15] = 0.0
    x = P.prepare("004", grey, 32)  # brain window of HU == grey / 255
    assert x.shape == (3, 32, 32) and x.min() >= -1e-6 and x.max() <= 1 + 1e-5
    x = P.prepare("003", grey, 32)  # HU for the network's own windowing
    assert x.shape == (1, 32, 32) and x.min() >= -1e-4 and x.max() <= 80 + 1e-3 and x.max() > 79
    x = P.prepare("001", grey, 32)  # [0, 1] then ImageNet mean/std
    assert x.shape == (3, 32, 32)
    lo = (0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert x[:, 0, 0] == pytest.approx(lo, abs=1e-4)  # padded corner is black
    with pytest.raises(ValueError):
        P.prepare("003", grey, 40)  # VGG needs multiples of 16


def test_load_png_set(tiny_png_set) -> None:
    rows = P.read_labels(tiny_png_set)
    assert rows[0] == ("1", 1) and len(rows) == 8
    assert P.image_path(tiny_png_set, "1").name == "001.png"
    data = P.load_png_set(tiny_png_set, "resnet50_cls", 32)
    assert data.inputs.shape == (8, 3, 32, 32) and data.inputs.dtype == np.float32
    assert data.labels.tolist() == [1, 0] * 4
    sub = data.subset([1, 3])
    assert sub.ids == ["2", "4"] and sub.inputs.shape[0] == 2


def test_bad_labels(tmp_path) -> None:
    (tmp_path / "labels.csv").write_text("id,label\n1,1\n")
    with pytest.raises(ValueError):
        P.read_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("id,hemorrhage\n1,2\n")
    with pytest.raises(ValueError):
        P.read_labels(tmp_path)
