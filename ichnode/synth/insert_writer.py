"""Write an inserted-hemorrhage case: DICOM series, truth.json, truth_mask.nii.gz, truth_fraction.nii.gz.

The series keeps the background's geometry headers (ImagePositionPatient, ImageOrientationPatient,
PixelSpacing, SliceThickness, GantryDetectorTilt) so it stacks exactly like the background; pixels are
uncompressed signed 16-bit with RescaleIntercept -1024. Study/Series/SOP Instance UIDs are derived from
the spec and the background series, and the patient is anonymous ("ICHNODE^SYNTH", "SYNTH-<digest>").
NIfTI files are in the written series' voxel grid (i = column, j = row, k = slice) with the DICOM
patient (LPS) -> NIfTI (RAS) affine; the slice axis uses the mean table step, so across the background's
missing slice the affine is off by that gap.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from .background import VoxelGrid
from .dicom_writer import INTERCEPT, save_ct_slice
from .uids import synth_uid
from .insert import InsertedCase

# Kept from the background header: geometry and acquisition; everything else is rewritten or dropped.
KEEP = ("ImageType", "SOPClassUID", "Modality", "Manufacturer", "ManufacturerModelName", "KVP",
        "SliceThickness", "GantryDetectorTilt", "ConvolutionKernel", "PatientPosition",
        "ImagePositionPatient", "ImageOrientationPatient", "SliceLocation", "PixelSpacing", "Rows",
        "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BodyPartExamined",
        "ReconstructionDiameter", "XRayTubeCurrent", "Exposure", "FilterType")


def case_uids(case: InsertedCase) -> tuple[str, str, str]:
    """(study, series, frame of reference): one study per background, one series per spec."""
    source = case.truth.get("background_series_uid", "")
    study = synth_uid("insert-study", source)
    return study, synth_uid("insert-series", source, case.spec.digest()), synth_uid("insert-frame", source)


def nifti_affine(grid: VoxelGrid) -> np.ndarray:
    """Voxel (column, row, slice) -> RAS mm."""
    _, dy, dx = grid.spacing_mm
    n = len(grid.ipp)
    step = (grid.ipp[-1] - grid.ipp[0]) / (n - 1) if n > 1 else grid.normal * grid.spacing_mm[0]
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = grid.row * dx, grid.col * dy, step, grid.ipp[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _slice_header(src, study, series, frame, digest, number, description):
    ds = copy.deepcopy(src)
    for elem in list(ds):
        if elem.keyword not in KEEP:
            del ds[elem.tag]
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.SOPInstanceUID = synth_uid("insert-image", series, number)
    ds.SOPClassUID = CTImageStorage
    ds.InstanceNumber, ds.SeriesNumber, ds.AcquisitionNumber = number, 900, 1
    ds.PatientName, ds.PatientID = "ICHNODE^SYNTH", f"SYNTH-{digest}"
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", f"SYN{digest[:8]}", ""
    ds.Modality = "CT"
    ds.StudyDescription = "CT HEAD (synthetic hemorrhage on real background)"
    ds.SeriesDescription = description[:64]
    ds.PositionReferenceIndicator = ""
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(INTERCEPT), "1", "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "80"
    return ds


def write_case(outdir: Path | str, case: InsertedCase) -> dict:
    """Write CT0000.dcm... (slice order), truth.json and the NIfTI truth into outdir; returns truth."""
    import nibabel as nib

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    vol, spec = case.volume, case.spec
    if not vol.datasets:
        raise ValueError("the case's volume has no source headers to take the geometry from")
    study, series, frame = case_uids(case)
    digest = spec.digest()
    description = (f"SYNTHETIC {spec.subtype.upper()} {case.truth['volume_ml']:.1f}mL on real CT"
                   f"{' mirrored' if spec.mirror else ''}{' de-enhanced' if spec.remove_contrast else ''}")
    files = []
    for k, src in enumerate(vol.datasets):
        ds = _slice_header(src, study, series, frame, digest, k + 1, description)
        hu = np.clip(vol.hu[k], -1024, 3071)
        files.append(save_ct_slice(ds, hu, outdir / f"CT{k:04d}.dcm").name)
    affine = nifti_affine(VoxelGrid.of(vol))
    to_nifti = (lambda a: np.ascontiguousarray(a.transpose(2, 1, 0)))
    nib.save(nib.Nifti1Image(to_nifti(case.labels), affine), outdir / "truth_mask.nii.gz")
    nib.save(nib.Nifti1Image(to_nifti(case.fraction.astype(np.float32)), affine), outdir / "truth_fraction.nii.gz")
    truth = dict(case.truth, study_uid=study, series_uid=series, frame_of_reference_uid=frame,
                 patient_id=f"SYNTH-{digest}", files=files, transfer_syntax=str(ExplicitVRLittleEndian),
                 mask_file="truth_mask.nii.gz", fraction_file="truth_fraction.nii.gz",
                 mask_labels={"1": "iph", "2": "ivh", "3": "sah", "4": "sdh", "5": "edh"},
                 mask_rule="label where blood fraction >= 0.5 (label_volume_ml); volume_ml = sum of "
                           "truth_fraction x voxel_ml")
    (outdir / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth
