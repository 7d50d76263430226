"""Spooled files of one series -> headers in slice order -> Volume in HU, or a reason why not."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from ichnode.assemble.geometry import StackGeometry, analyse_stack, same_orientation
from ichnode.dicom.cosmetic import repair_cosmetic_values
from ichnode.domain import Volume
from ichnode.errors import NotEligible

AIR_HU = -1024.0


@dataclass(frozen=True)
class Headers:
    """Readable headers of a series (no pixel data) and the files that could not be read."""

    datasets: tuple[pydicom.Dataset, ...]
    paths: tuple[Path, ...]
    unreadable: tuple[tuple[Path, str], ...]


def read_headers(paths) -> Headers:
    datasets, good, bad = [], [], []
    for path in map(Path, paths):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            ds.SOPInstanceUID  # noqa: B018 - a file without it is not an instance we can use
            for _ in ds.iterall():
                pass  # decode every header element now: a damaged one makes the file unreadable
            _check_numbers(ds)
            repair_cosmetic_values(ds)
        except Exception as exc:  # noqa: BLE001 - per-file boundary: pydicom raises many types on
            # damaged bytes (struct.error, BytesLengthException, KeyError, ...); the file is listed
            # as unreadable with the error, the series goes on without it.
            bad.append((path, f"{type(exc).__name__}: {exc}"))
            continue
        datasets.append(ds)
        good.append(path)
    return Headers(tuple(datasets), tuple(good), tuple(bad))


# Numeric attributes the pipeline computes with, and how many values each has (None: any).
_NUMERIC = {"ImagePositionPatient": 3, "ImageOrientationPatient": 6, "PixelSpacing": 2,
            "SliceThickness": 1, "RescaleSlope": 1, "RescaleIntercept": 1, "Rows": 1, "Columns": 1,
            "InstanceNumber": 1}


def _check_numbers(ds: pydicom.Dataset) -> None:
    """A present numeric attribute must hold finite numbers, as many as it should."""
    for keyword, count in _NUMERIC.items():
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"{keyword} is not numeric") from None
        if len(numbers) != count or not all(np.isfinite(numbers)):
            raise ValueError(f"{keyword} must be {count} finite number(s)")


def stack_geometry(headers: Headers, gap_tolerance: float) -> StackGeometry:
    """Check what a volume needs from the headers and return its geometry; NotEligible if absent."""
    datasets = headers.datasets
    if not datasets:
        raise NotEligible("no readable image in the series")
    if "PerFrameFunctionalGroupsSequence" in datasets[0]:
        raise NotEligible("multi-frame (Enhanced CT) series are stored but not analysed yet")
    missing = [k for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                           "Rows", "Columns") if any(k not in ds for ds in datasets)]
    if missing:
        raise NotEligible(f"images lack {', '.join(missing)}: cannot build a volume")
    orientations = [[float(v) for v in ds.ImageOrientationPatient] for ds in datasets]
    if not same_orientation(orientations):
        raise NotEligible("mixed image orientations in one series")
    shapes = {(int(ds.Rows), int(ds.Columns)) for ds in datasets}
    if len(shapes) > 1:
        raise NotEligible(f"inconsistent image sizes in one series: {sorted(shapes)}")
    spacings = {tuple(round(float(v), 4) for v in ds.PixelSpacing) for ds in datasets}
    if len(spacings) > 1:
        raise NotEligible("inconsistent pixel spacing in one series")
    positions = [[float(v) for v in ds.ImagePositionPatient] for ds in datasets]
    return analyse_stack(orientations[0], positions, gap_tolerance)


def load_volume(headers: Headers, geometry: StackGeometry) -> Volume:
    """Decode pixels in slice order and convert them to HU (padding becomes air)."""
    first = headers.datasets[0]
    rows, cols = int(first.Rows), int(first.Columns)
    hu = np.empty((len(geometry.order), rows, cols), dtype=np.float32)
    ordered = []
    for z, index in enumerate(geometry.order):
        ds = pydicom.dcmread(headers.paths[index])
        repair_cosmetic_values(ds)
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types
            raise NotEligible(f"pixel data of instance {z + 1} cannot be decoded: {exc}") from exc
        hu[z] = _to_hu(ds, pixels)
        del ds.PixelData  # writers only need the header; keeps memory at one copy of the volume
        ordered.append(ds)
    dy, dx = (float(v) for v in first.PixelSpacing)
    return Volume(
        study_uid=str(first.StudyInstanceUID),
        series_uid=str(first.SeriesInstanceUID),
        hu=hu,
        spacing_mm=(geometry.spacing_mm, dy, dx),
        datasets=tuple(ordered),
        tilt_deg=geometry.tilt_deg,
    )


def _to_hu(ds: pydicom.Dataset, pixels: np.ndarray) -> np.ndarray:
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    out = pixels.astype(np.float32) * slope + intercept
    padding = ds.get("PixelPaddingValue")
    if padding is not None:
        out[pixels == padding] = AIR_HU
    # Outside the reconstruction circle scanners store values far below air.
    np.maximum(out, AIR_HU, out=out)
    return out
