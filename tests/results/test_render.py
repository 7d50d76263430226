import numpy as np

from ichnode.ids import digest, result_uid
from ichnode.results import render


def _yellow(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 100) & (g > 100) & (b < 80)


def test_window_brain():
    out = render.window(np.array([-1000.0, 0.0, 40.0, 80.0, 3000.0]))
    assert out.dtype == np.uint8
    assert out[0] == 0 and out[1] == 0 and out[3] == 255 and out[4] == 255
    assert 126 <= out[2] <= 129


def test_jet_ends():
    lo, hi = render.jet(np.array([0.0, 1.0]))
    assert lo[2] > lo[0] and hi[0] > hi[2]


def test_contour_is_ring():
    m = np.zeros((9, 9), bool)
    m[2:7, 2:7] = True
    edge = render.contour(m)
    assert edge.sum() == 16 and not edge[4, 4] and edge[2, 2]


def test_overlay_colours_contour_and_heat():
    hu = np.full((32, 32), 40.0, np.float32)
    labels = np.zeros((32, 32), np.uint8)
    labels[10:20, 10:20] = 2
    plain = render.overlay(hu, None, ("IPH", "IVH"))
    assert plain.shape == (32, 32, 3) and (plain == plain[0, 0]).all()
    out = render.overlay(hu, labels, ("IPH", "IVH"))
    assert tuple(out[10, 10]) == render.CLASS_COLORS["IVH"]
    assert tuple(out[15, 15]) == tuple(plain[15, 15])  # interior untouched: contour only
    heat = np.zeros((32, 32), np.float32)
    heat[0:5, 0:5] = 1.0
    hot = render.overlay(hu, None, (), heat)
    assert hot[2, 2, 2] < plain[2, 2, 2] and (hot[20:, 20:] == plain[20:, 20:]).all()


def test_banner_visible_at_512_and_64():
    for size in (512, 64):
        rgb = np.zeros((size, size, 3), np.uint8)
        rgb[size // 2:] = 90
        before = rgb.copy()
        out = render.burn_banner(rgb)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert (rgb == before).all()  # pure: input left alone
        bar = out[: max(4, size // 10)]
        assert _yellow(bar).sum() >= (200 if size == 512 else 10)
        assert (out[size // 2:] == 90).all()  # nothing outside the banner bar changes


def test_banner_text_legible_height_on_512():
    out = render.burn_banner(np.zeros((512, 512, 3), np.uint8))
    rows = np.nonzero(_yellow(out).any(axis=1))[0]
    assert rows.max() - rows.min() >= 12  # at least ~12 px tall glyphs on a 512 image
    cols = np.nonzero(_yellow(out).any(axis=0))[0]
    assert cols.min() > 0 and cols.max() < 511  # whole text inside the image


def test_key_slices_by_area_then_heat_then_middle():
    labels = np.zeros((10, 8, 8), np.uint8)
    labels[2, :2, :2] = 1  # area 4
    labels[5, :4, :4] = 1  # area 16
    labels[7, :3, :3] = 2  # area 9
    labels[8, :1, :1] = 1  # area 1
    assert render.key_slices(labels, None, n=3) == [2, 5, 7]
    assert render.key_slices(labels, None, n=1) == [5]
    assert render.key_slices(labels, None, n=10) == [2, 5, 7, 8]  # only slices with lesion
    heat = np.zeros((10, 8, 8), np.float32)
    heat[1, 0, 0], heat[4, 0, 0], heat[9, 0, 0] = 0.2, 0.9, 0.5
    empty = np.zeros_like(labels)
    assert render.key_slices(empty, heat, n=2) == [4, 9]
    assert render.key_slices(empty, np.zeros_like(heat), n=3) == [5]
    assert render.key_slices(None, None) == []


def test_render_key_image_shape():
    out = render.render_key_image(np.zeros((64, 64)), np.zeros((64, 64), np.uint8), ("ICH",))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_result_uid_deterministic_and_valid():
    a = result_uid("1.2.3", "1.0", "seg")
    assert a == result_uid("1.2.3", "1.0", "seg")
    assert a.startswith("2.25.") and len(a) <= 64 and a.is_valid
    others = {result_uid("1.2.3", "1.1", "seg"), result_uid("1.2.3", "1.0", "sr"),
              result_uid("1.2.4", "1.0", "seg"), result_uid("1.2.3", "1.0", "seg", 1)}
    assert a not in others and len(others) == 4
    # The separator keeps field boundaries: ("1.2", "3") must differ from ("1.", "23").
    assert result_uid("1.2", "3", "x") != result_uid("1.", "23", "x")


def test_digest_short_and_stable():
    assert digest("PATIENT-1") == digest("PATIENT-1") != digest("PATIENT-2")
    assert len(digest("x")) == 12 and "PATIENT" not in digest("PATIENT-1")
