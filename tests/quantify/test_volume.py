import numpy as np
import pytest

from ichnode.quantify.volume import abc2, quantify


def ellipsoid(shape, centre, radii):
    zz, yy, xx = np.indices(shape)
    return (((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2
            + ((xx - centre[2]) / radii[2]) ** 2) <= 1.0


def test_volumes_per_class_and_total():
    labels = np.zeros((20, 50, 50), np.uint8)
    labels[2:6, 10:20, 10:20] = 1  # 400 voxels
    labels[10:12, 30:40, 30:35] = 2  # 100 voxels
    q = quantify(labels, ("IPH", "SDH"), (2.0, 0.5, 0.5))  # 0.5 uL per voxel
    assert q.volume_ml_by_class == {"IPH": pytest.approx(0.2), "SDH": pytest.approx(0.05)}
    assert q.total_ml == pytest.approx(0.25)
    assert q.lesion_count == 2
    assert q.largest_lesion_ml == pytest.approx(0.2)


def test_abc2_of_an_ellipsoid_follows_kothari_weighting():
    # Kothari's slice weights count |z| <= r/2 fully and r/2..0.87r half, so C = 0.683 x height
    # and ABC/2 = 2.73abc against the true 4.19abc: 0.652 of the volume for an ideal ellipsoid.
    spacing = (1.0, 0.5, 0.5)
    mask = ellipsoid((60, 120, 120), (30, 60, 60), (15, 40, 24))  # semi-axes 15, 20, 12 mm
    result = abc2(mask, spacing)
    assert result.a_mm == pytest.approx(40, rel=0.05)
    assert result.b_mm == pytest.approx(24, rel=0.06)
    assert result.c_mm == pytest.approx(30 * 0.683, rel=0.08)
    true_ml = mask.sum() * np.prod(spacing) / 1000
    assert result.volume_ml == pytest.approx(0.652 * true_ml, rel=0.1)


def test_abc2_overestimates_a_crescent():
    # Irregular shapes (SDH crescents) are where ABC/2 fails; the segmented volume does not.
    shell = ellipsoid((30, 200, 200), (15, 100, 100), (14, 90, 90)) & ~ellipsoid(
        (30, 200, 200), (15, 100, 100), (14, 84, 84))
    shell[:, :, 100:] = False  # one convexity
    q = quantify(shell.astype(np.uint8), ("SDH",), (5.0, 0.5, 0.5))
    assert q.abc2.volume_ml > 1.5 * q.largest_lesion_ml


def test_empty_labels():
    q = quantify(np.zeros((4, 8, 8), np.uint8), ("ICH",), (5.0, 1.0, 1.0))
    assert q.total_ml == 0 and q.abc2 is None and q.abc2_ratio is None
