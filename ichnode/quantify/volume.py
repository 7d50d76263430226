"""Pure quantification: segmented volumes per class and lesion, ABC/2 of the largest lesion.

ABC/2 follows Kothari et al. (Stroke 1996): A is the greatest diameter on the slice with the largest
hemorrhage area, B the largest diameter perpendicular to A on that slice, and C the number of slices
with hemorrhage times the slice thickness, where a slice counts 1 if its area is at least 75% of the
largest, 0.5 if 25-75%, and 0 below 25%.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ichnode.domain import ABC2, Quantities


def label_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """3D connected components with 26-connectivity."""
    return ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))


def quantify(labels: np.ndarray, segment_classes: tuple[str, ...],
             spacing_mm: tuple[float, float, float]) -> Quantities:
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    counts = np.bincount(labels.ravel(), minlength=len(segment_classes) + 1)
    by_class = {cls: float(counts[k + 1]) * voxel_ml for k, cls in enumerate(segment_classes)}
    components, n = label_lesions(labels > 0)
    if n == 0:
        return Quantities(by_class, 0.0, 0, 0.0, None)
    sizes = np.bincount(components.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    return Quantities(
        volume_ml_by_class=by_class,
        total_ml=float(sizes.sum()) * voxel_ml,
        lesion_count=n,
        largest_lesion_ml=float(sizes[largest - 1]) * voxel_ml,
        abc2=abc2(components == largest, spacing_mm),
    )


def abc2(lesion: np.ndarray, spacing_mm: tuple[float, float, float]) -> ABC2 | None:
    """Kothari ABC/2 measurements of one lesion mask (z, y, x)."""
    areas = lesion.reshape(lesion.shape[0], -1).sum(axis=1)
    if areas.max() == 0:
        return None
    dz, dy, dx = spacing_mm
    k = int(np.argmax(areas))
    a_mm, b_mm = _diameters(np.argwhere(lesion[k]), dy, dx)
    fractions = areas / areas[k]
    weights = np.where(fractions >= 0.75, 1.0, np.where(fractions >= 0.25, 0.5, 0.0))
    return ABC2(a_mm=a_mm, b_mm=b_mm, c_mm=float(weights.sum()) * dz, slice_index=k)


def _diameters(pixels: np.ndarray, dy: float, dx: float) -> tuple[float, float]:
    """Greatest diameter A and the largest width perpendicular to it, in mm.

    Pixels are treated as squares: their corners make the extents count whole pixels.
    """
    corners = np.concatenate([pixels + offset for offset in
                              ((-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5))])
    points = corners * np.array([dy, dx])
    try:
        points = points[ConvexHull(points).vertices]
    except QhullError:  # degenerate (a line of pixels): use all corner points
        pass
    deltas = points[:, None, :] - points[None, :, :]
    dist = np.sqrt((deltas ** 2).sum(axis=-1))
    i, j = np.unravel_index(np.argmax(dist), dist.shape)
    a = float(dist[i, j])
    direction = (points[j] - points[i]) / a
    perpendicular = np.array([-direction[1], direction[0]])
    projection = points @ perpendicular
    return a, float(projection.max() - projection.min())
