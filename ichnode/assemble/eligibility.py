"""Is a series an axial non-contrast head CT we can analyse? Pure checks on headers, geometry and,
for contrast, the images.

Each check raises NotEligible with a sentence a radiologist can read in the SR and in `status`.
"""
from __future__ import annotations

import pydicom

from ichnode.assemble.geometry import StackGeometry
from ichnode.config import EligibilityConfig
from ichnode.domain import Volume
from ichnode.errors import NotEligible
from ichnode.infer.contrast import enhancement_evidence, is_enhanced


def check_size(paths, cfg: EligibilityConfig) -> None:
    """Before a header is read: a series of more files than any head CT has is not read at all."""
    if len(paths) > cfg.max_slices:
        raise NotEligible(f"{len(paths)} instances, more than eligibility.max_slices "
                          f"({cfg.max_slices}): not read")


def check_headers(datasets: tuple[pydicom.Dataset, ...], cfg: EligibilityConfig) -> None:
    # Sizes first, before anything is allocated from them: a small compressed instance may
    # declare a 65535 x 65535 image, and the volume is Rows x Columns x slices.
    matrix = max(max(int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)) for ds in datasets)
    if matrix > cfg.max_matrix:
        raise NotEligible(f"images of {matrix} pixels a side, more than eligibility.max_matrix "
                          f"({cfg.max_matrix})")
    if any(int(ds.get("NumberOfFrames") or 1) > 1 for ds in datasets):
        raise NotEligible("multi-frame images are stored but not analysed")
    modalities = sorted({str(ds.get("Modality", "")) or "none" for ds in datasets})
    wrong = [m for m in modalities if m not in cfg.modalities]
    if wrong:
        raise NotEligible(f"modality {', '.join(wrong)} is not {' or '.join(cfg.modalities)}")
    image_types = {str(v).upper() for ds in datasets for v in (ds.get("ImageType") or [])}
    if "LOCALIZER" in image_types:
        raise NotEligible("localizer (scout) images, not an axial series")
    if cfg.reject_contrast and any(str(ds.get("ContrastBolusAgent", "")).strip() for ds in datasets):
        raise NotEligible("contrast-enhanced series (ContrastBolusAgent is set); "
                          "the models are for non-contrast CT")
    thickness = _thickness(datasets)
    if thickness is not None and not (
            cfg.min_slice_thickness_mm <= thickness <= cfg.max_slice_thickness_mm):
        raise NotEligible(f"slice thickness {thickness:g} mm outside "
                          f"{cfg.min_slice_thickness_mm:g}-{cfg.max_slice_thickness_mm:g} mm")


def check_geometry(geometry: StackGeometry, cfg: EligibilityConfig) -> None:
    if geometry.axial_deviation_deg > cfg.max_axial_deviation_deg:
        raise NotEligible(f"not an axial series: slice normal {geometry.axial_deviation_deg:.0f} deg "
                          "from the head-foot axis (coronal, sagittal or oblique)")
    if geometry.tilt_deg > cfg.max_tilt_deg:
        raise NotEligible(f"gantry tilt {geometry.tilt_deg:.1f} deg exceeds {cfg.max_tilt_deg:g} deg")
    if geometry.duplicate_positions:
        raise NotEligible(f"{geometry.duplicate_positions} slice(s) share a position with another "
                          "slice (duplicate or overlapping acquisitions in one series)")
    n = len(geometry.order)
    if n < cfg.min_slices:
        raise NotEligible(f"only {n} slice(s); at least {cfg.min_slices} are needed")
    if geometry.missing_mm > cfg.max_missing_mm:
        index, step = geometry.gaps[0]
        missing = sum(round(s / geometry.spacing_mm) - 1 for _, s in geometry.gaps)
        raise NotEligible(f"missing slice(s): {len(geometry.gaps)} gap(s), about {missing} slice(s) "
                          f"missing; first gap {step:.1f} mm after slice {index + 1} "
                          f"(spacing {geometry.spacing_mm:.2f} mm)")
    if geometry.coverage_mm < cfg.min_coverage_mm:
        raise NotEligible(f"coverage {geometry.coverage_mm:.0f} mm is less than "
                          f"{cfg.min_coverage_mm:g} mm: not a whole head")


def check_images(volume: Volume, cfg: EligibilityConfig) -> None:
    if not cfg.reject_contrast:
        return
    evidence = enhancement_evidence(volume)
    if is_enhanced(evidence, cfg.contrast_enhanced_ml):
        raise NotEligible(f"contrast-enhanced series, from the images: "
                          f"{evidence.sentence(cfg.contrast_enhanced_ml)}; the models are for "
                          "non-contrast CT (eligibility.reject_contrast: false analyses it anyway)")


def _thickness(datasets) -> float | None:
    values = [float(ds.SliceThickness) for ds in datasets if ds.get("SliceThickness") not in (None, "")]
    return max(values) if values else None
