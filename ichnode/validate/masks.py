"""Truth masks for volume error: NIfTI files matched to a series by grid, DICOM SEG by reference.

* NIfTI (``.nii``, ``.nii.gz``): matched to an analysed series when its 3D shape is the series' shape
  (in any axis order) and its 8 corner voxel centres lie within ``GRID_TOLERANCE_MM`` of the series'
  corner voxel centres (patient coordinates; NIfTI RAS is turned into DICOM LPS). The truth volume
  is the number of voxels > 0 times the voxel volume of the NIfTI affine (all labels together).
  When the grid fits several series (same protocol and table position), the file name, or a folder
  name, must be the label key, StudyInstanceUID or SeriesInstanceUID (optionally followed by "_...").
* DICOM SEG: matched to the series its ReferencedSeriesSequence names. The truth volume is the
  number of set pixels over all frames (fractional: above half the maximum) times pixel spacing
  times slice thickness (or spacing between slices), summed over segments.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

GRID_TOLERANCE_MM = 2.0
LPS = np.array([-1.0, -1.0, 1.0])  # RAS <-> LPS


@dataclass(frozen=True)
class TruthMask:
    path: Path
    volume_ml: float
    kind: str  # "nifti" | "seg"
    shape: tuple[int, ...] = ()
    corners: np.ndarray | None = None  # (8, 3) LPS mm, NIfTI only
    series_uid: str | None = None  # SEG only


@dataclass(frozen=True)
class Grid:
    """Where a series' voxels are: its (z, y, x) shape and corner voxel centres in LPS mm."""

    shape: tuple[int, int, int]
    corners: np.ndarray


def series_grid(datasets) -> Grid:
    """Grid of an assembled volume from its headers in z order (first and last slice)."""
    first, last = datasets[0], datasets[-1]
    rows, cols = int(first.Rows), int(first.Columns)
    dy, dx = (float(v) for v in first.PixelSpacing)
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    row_dir, col_dir = iop[:3], iop[3:]
    corners = [np.array([float(v) for v in ds.ImagePositionPatient]) + j * dx * row_dir + i * dy * col_dir
               for ds in (first, last) for i in (0, rows - 1) for j in (0, cols - 1)]
    return Grid((len(datasets), rows, cols), np.array(corners))


def matches(mask: TruthMask, grid: Grid, tolerance_mm: float = GRID_TOLERANCE_MM) -> bool:
    if mask.corners is None or sorted(mask.shape) != sorted(grid.shape):
        return False
    d = np.linalg.norm(mask.corners[:, None, :] - grid.corners[None, :, :], axis=2)
    return bool(d.min(axis=1).max() <= tolerance_mm and d.min(axis=0).max() <= tolerance_mm)


def load_masks(folder: Path) -> tuple[list[TruthMask], list[tuple[Path, str]]]:
    """Every NIfTI and DICOM SEG under folder; the others come back as (path, reason)."""
    masks, skipped = [], []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            if path.name.lower().endswith((".nii", ".nii.gz")):
                masks.append(_nifti(path))
            else:
                mask = _seg(path)
                if mask is None:
                    skipped.append((path, "neither NIfTI nor DICOM SEG"))
                else:
                    masks.append(mask)
        except Exception as exc:  # noqa: BLE001 - a broken mask file is listed, the run goes on
            skipped.append((path, f"{type(exc).__name__}: {exc}"))
    return masks, skipped


def _nifti(path: Path) -> TruthMask:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"NIfTI mask must be 3D, got shape {data.shape}")
    affine = np.asarray(img.affine, dtype=np.float64)
    idx = np.array([[i, j, k, 1.0] for i in (0, data.shape[0] - 1) for j in (0, data.shape[1] - 1)
                    for k in (0, data.shape[2] - 1)])
    corners = (idx @ affine.T)[:, :3] * LPS
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    return TruthMask(path, float(np.count_nonzero(data > 0)) * voxel_ml, "nifti", tuple(data.shape),
                     corners)


def _seg(path: Path) -> TruthMask | None:
    try:
        ds = pydicom.dcmread(path)
    except Exception:  # noqa: BLE001 - not DICOM
        return None
    if ds.get("Modality") != "SEG":
        return None
    series_uid = str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    dy, dx = (float(v) for v in measures.PixelSpacing)
    dz = float(measures.get("SpacingBetweenSlices") or measures.SliceThickness)
    pixels = ds.pixel_array
    if ds.get("SegmentationType") == "FRACTIONAL":
        count = int(np.count_nonzero(pixels > float(ds.get("MaximumFractionalValue", 255)) / 2))
    else:
        count = int(np.count_nonzero(pixels))
    return TruthMask(path, count * dx * dy * dz / 1000.0, "seg", series_uid=series_uid)
