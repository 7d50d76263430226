"""Pure slice geometry: normal, order along it, spacing, gaps, duplicates, tilt, orientation.

The slice normal is the cross product of the row and column direction cosines; positions are
projected on it. A gantry-tilted series keeps its in-plane orientation tilted while the table moves
along z, so the tilt is the angle between the normal and the direction in which positions advance.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ORIENTATION_TOLERANCE = 1e-3  # direction cosines equal within this are "the same orientation"
POSITION_TOLERANCE_MM = 0.01


@dataclass(frozen=True)
class StackGeometry:
    order: tuple[int, ...]  # indices of the input slices sorted along the normal
    positions_mm: tuple[float, ...]  # sorted positions along the normal
    spacing_mm: float  # median step along the normal
    gaps: tuple[tuple[int, float], ...]  # (sorted index before the gap, step in mm)
    duplicate_positions: int  # slices that share a position with another slice
    tilt_deg: float  # angle between the normal and the direction positions advance in
    axial_deviation_deg: float  # angle between the normal and the patient's head-foot axis

    @property
    def missing_mm(self) -> float:
        """Coverage lost in gaps: the sum of (step - spacing) over the gaps."""
        return sum(step - self.spacing_mm for _, step in self.gaps)

    @property
    def coverage_mm(self) -> float:
        return self.positions_mm[-1] - self.positions_mm[0] if self.positions_mm else 0.0


def slice_normal(orientation) -> np.ndarray:
    iop = np.asarray(orientation, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return normal / np.linalg.norm(normal)


def same_orientation(orientations) -> bool:
    arr = np.asarray(orientations, dtype=float)
    return bool(np.all(np.abs(arr - arr[0]) < ORIENTATION_TOLERANCE))


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = abs(float(np.dot(a, b))) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(min(1.0, cos))))


def analyse_stack(orientation, positions, gap_tolerance: float = 0.5) -> StackGeometry:
    """Order slices of one orientation along the normal and describe the stack."""
    normal = slice_normal(orientation)
    pos = np.asarray(positions, dtype=float).reshape(-1, 3)
    along = pos @ normal
    order = np.argsort(along, kind="stable")
    sorted_along = along[order]
    steps = np.diff(sorted_along)
    duplicates = int(np.sum(steps < POSITION_TOLERANCE_MM))
    distinct = steps[steps >= POSITION_TOLERANCE_MM]
    spacing = float(np.median(distinct)) if distinct.size else 0.0
    gaps = tuple(
        (int(i), float(step)) for i, step in enumerate(steps)
        if spacing > 0 and step > spacing * (1.0 + gap_tolerance)
    )
    tilt = 0.0
    if len(pos) > 1:
        advance = pos[order[-1]] - pos[order[0]]
        if np.linalg.norm(advance) > POSITION_TOLERANCE_MM:
            tilt = _angle_deg(normal, advance)
    return StackGeometry(
        order=tuple(int(i) for i in order),
        positions_mm=tuple(float(x) for x in sorted_along),
        spacing_mm=spacing,
        gaps=gaps,
        duplicate_positions=duplicates,
        tilt_deg=tilt,
        axial_deviation_deg=_angle_deg(normal, np.array([0.0, 0.0, 1.0])),
    )
