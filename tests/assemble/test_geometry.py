import numpy as np
import pytest

from ichnode.assemble.geometry import analyse_stack, same_orientation, slice_normal

AXIAL = [1, 0, 0, 0, 1, 0]


def axial_positions(n, step=5.0, start=-50.0):
    return [[-100.0, -100.0, start + i * step] for i in range(n)]


def test_sorts_shuffled_slices_along_the_normal():
    positions = axial_positions(10)
    shuffled = [positions[i] for i in (3, 0, 9, 1, 5, 2, 8, 4, 7, 6)]
    geometry = analyse_stack(AXIAL, shuffled)
    assert [shuffled[i][2] for i in geometry.order] == [p[2] for p in positions]
    assert geometry.spacing_mm == pytest.approx(5.0)
    assert geometry.coverage_mm == pytest.approx(45.0)
    assert geometry.gaps == () and geometry.duplicate_positions == 0
    assert geometry.tilt_deg == pytest.approx(0.0) and geometry.axial_deviation_deg == pytest.approx(0)


def test_missing_slice_is_a_gap():
    positions = axial_positions(10)
    del positions[4]
    geometry = analyse_stack(AXIAL, positions)
    assert geometry.gaps == ((3, pytest.approx(10.0)),)


def test_duplicate_positions_are_counted():
    positions = axial_positions(6) + [[-100.0, -100.0, -40.0]]
    assert analyse_stack(AXIAL, positions).duplicate_positions == 1


def test_gantry_tilt_is_the_angle_between_normal_and_table_motion():
    tilt = np.radians(15)
    orientation = [1, 0, 0, 0, np.cos(tilt), -np.sin(tilt)]
    geometry = analyse_stack(orientation, axial_positions(20))
    assert geometry.tilt_deg == pytest.approx(15, abs=0.01)
    # Spacing is measured along the normal: table step x cos(tilt).
    assert geometry.spacing_mm == pytest.approx(5 * np.cos(tilt), rel=1e-6)


def test_coronal_series_is_far_from_axial():
    coronal = [1, 0, 0, 0, 0, -1]
    positions = [[-100.0, -50.0 + 3 * i, 100.0] for i in range(10)]
    geometry = analyse_stack(coronal, positions)
    assert geometry.axial_deviation_deg == pytest.approx(90)
    assert geometry.tilt_deg == pytest.approx(0)


def test_normal_and_orientation_equality():
    assert np.allclose(slice_normal(AXIAL), [0, 0, 1])
    assert same_orientation([AXIAL, AXIAL])
    assert not same_orientation([AXIAL, [1, 0, 0, 0, 0, -1]])


def test_missing_coverage_of_gaps():
    positions = axial_positions(20, step=0.625)
    del positions[7]
    assert analyse_stack(AXIAL, positions).missing_mm == pytest.approx(0.625)
