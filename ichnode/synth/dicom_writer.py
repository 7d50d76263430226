"""Write a synthetic head CT phantom as a CT Image Storage series plus truth.json.

Pixels are stored signed 16-bit with RescaleIntercept -1024 (stored = HU + 1024), so the region
outside the reconstruction circle can carry the scanner-style padding value -2000.
JPEG Lossless SV1: pydicom 3 has no encoder for that transfer syntax (pylibjpeg-libjpeg only
decodes), so the uncompressed files are re-encoded with DCMTK's dcmcjpeg (+e1: process 14,
selection value 1; lossless, SOP Instance UIDs kept).
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGLosslessSV1, PYDICOM_IMPLEMENTATION_UID

from .phantom import PAD_HU, Phantom, SynthSpec, make_phantom
from .uids import series_uids, synth_uid

INTERCEPT = -1024
PAD_STORED = PAD_HU - INTERCEPT  # -2000
MANUFACTURER = "ichnode-synth"
_BASE_DATE = dt.date(2024, 1, 1)


def _ds(v: float) -> str:
    """Decimal String value of at most 16 characters."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s[:16]


def _header(ph: Phantom, study_uid: str, series_uid: str, n_written: int) -> Dataset:
    """Attributes shared by all images of the series."""
    s = ph.spec
    date = (_BASE_DATE + dt.timedelta(days=s.seed % 365)).strftime("%Y%m%d")
    birth = f"{1940 + s.seed % 40}0615"
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "REFORMATTED"] if s.orientation == "coronal" \
        else ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime, ds.SeriesTime, ds.AcquisitionTime, ds.ContentTime = "101500", "101700", "101705", "101800"
    ds.AccessionNumber = f"SYN{s.seed % 10**8:08d}"
    ds.Modality = s.modality
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = "ichnode synthetic"
    ds.ReferringPhysicianName = "SYNTH^REFERRER"
    ds.StationName = "SYNTHCT"
    ds.StudyDescription = "CT HEAD WITH CONTRAST" if s.contrast else "CT HEAD WITHOUT CONTRAST"
    tag = " COR" if s.orientation == "coronal" else (f" tilt {s.tilt_deg:g}" if s.tilt_deg else "")
    ds.SeriesDescription = f"Head {s.thickness_mm:g}mm{tag}"
    ds.ManufacturerModelName = "synthetic head phantom"
    ds.PatientName = s.patient_name
    ds.PatientID = s.patient_id
    ds.PatientBirthDate = birth
    ds.PatientSex = "MF"[s.seed % 2]
    ds.PatientAge = f"{int(date[:4]) - int(birth[:4]):03d}Y"
    if s.contrast:
        ds.ContrastBolusAgent = "IOHEXOL 350"
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = "80"
    ds.BodyPartExamined = "HEAD"
    ds.ScanOptions = "AXIAL MODE"
    ds.SliceThickness = _ds(s.thickness_mm)
    ds.KVP = "120"
    ds.DataCollectionDiameter = "250"
    ds.SoftwareVersions = "ichnode-synth 1"
    ds.ProtocolName = "HEAD ROUTINE"
    ds.ReconstructionDiameter = _ds(s.fov_mm)
    ds.DistanceSourceToDetector = "949"
    ds.DistanceSourceToPatient = "541"
    ds.GantryDetectorTilt = _ds(s.tilt_deg)
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "1000"
    ds.XRayTubeCurrent = 250
    ds.Exposure = 250
    ds.FilterType = "HEAD FILTER"
    ds.GeneratorPower = 30
    ds.FocalSpots = "0.7"
    ds.ConvolutionKernel = "SOFT"
    ds.PatientPosition = "HFS"
    ds.CTDIvol = 55.0
    phantom_code = Dataset()
    phantom_code.CodeValue, phantom_code.CodingSchemeDesignator = "113691", "DCM"
    phantom_code.CodeMeaning = "IEC Head Dosimetry Phantom"
    ds.CTDIPhantomTypeCodeSequence = [phantom_code]
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"{s.seed % 10**6}"
    ds.SeriesNumber = 2 if s.thickness_mm >= 2 else 3
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [_ds(v) for v in ph.orientation]
    ds.FrameOfReferenceUID = synth_uid("frame", study_uid)
    ds.PositionReferenceIndicator = ""
    ds.ImagesInAcquisition = n_written
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ph.hu.shape[1:]
    ds.PixelSpacing = [_ds(ph.spacing_mm[1]), _ds(ph.spacing_mm[2])]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelPaddingValue = PAD_STORED
    ds.WindowCenter, ds.WindowWidth = "40", "80"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(INTERCEPT), "1", "HU"
    ds.WindowCenterWidthExplanation = "BRAIN"
    return ds


def _encode_jpeg_lossless(paths: list[Path]) -> None:
    """Re-encode files in place with dcmcjpeg (two at a time: the machines have few cores)."""
    exe = shutil.which("dcmcjpeg")
    if exe is None:
        raise RuntimeError("JPEG Lossless needs DCMTK's dcmcjpeg on PATH (pydicom cannot encode it)")
    running: list[tuple[subprocess.Popen, Path, Path]] = []

    def reap(proc, src, dst):
        if proc.wait() != 0:
            raise RuntimeError(f"dcmcjpeg failed on {dst}: {proc.stderr.read().decode(errors='replace')}")
        proc.stderr.close()
        src.unlink()

    for p in paths:
        src = p.with_suffix(".raw.dcm")
        p.rename(src)
        running.append((subprocess.Popen([exe, "+e1", str(src), str(p)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), src, p))
        if len(running) >= 2:
            reap(*running.pop(0))
    for r in running:
        reap(*r)


def save_ct_slice(ds: Dataset, hu: np.ndarray, path: Path) -> Path:
    """One CT image: HU stored as int16 with the rescale intercept INTERCEPT, explicit little
    endian, with its file meta information."""
    stored = np.rint(hu).astype(np.int32) - INTERCEPT
    ds.add_new(0x7FE00010, "OW", stored.astype("<i2").tobytes())  # PixelData
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.save_as(path, enforce_file_format=True)
    return path


def write_phantom(outdir: Path, ph: Phantom) -> dict:
    """Write an already made phantom; see write_series."""
    s = ph.spec
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = series_uids(s)
    written = [k for k in range(ph.hu.shape[0]) if k not in set(s.drop_slices)]
    base = _header(ph, study_uid, series_uid, len(written))
    positions, normal = ph.positions, ph.grid.normal
    centre_off = (np.array(ph.hu.shape[1:]) - 1) / 2.0 * ph.grid.dx
    paths = []
    for k in written:
        ds = Dataset()
        ds.update(base)
        ds.SOPInstanceUID = synth_uid("image", series_uid, k)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
        # Table position of the image centre (untilted axial: the z of the slice).
        centre = positions[k] + centre_off[1] * ph.grid.col + centre_off[0] * ph.grid.row
        ds.SliceLocation = _ds(float(centre @ normal) if s.orientation == "coronal" else centre[2])
        paths.append(save_ct_slice(ds, ph.hu[k], outdir / f"CT{k:04d}.dcm"))
    if s.jpeg_lossless:
        _encode_jpeg_lossless(paths)
    np.savez_compressed(outdir / "truth_mask.npz", mask=ph.mask)
    truth = ph.truth()
    truth.update(study_uid=study_uid, series_uid=series_uid, frame_of_reference_uid=base.FrameOfReferenceUID,
                 transfer_syntax=str(JPEGLosslessSV1 if s.jpeg_lossless else ExplicitVRLittleEndian),
                 written_slices=len(written), files=[p.name for p in paths], mask_file="truth_mask.npz",
                 modality=s.modality, contrast=s.contrast, patient_id=s.patient_id)
    (outdir / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def write_series(outdir: Path, spec: SynthSpec) -> dict:
    """Make the phantom for spec and write CT0000.dcm... (slice index k as CT{k:04d}.dcm, dropped
    slices absent), truth.json and truth_mask.npz (bool z,y,x over all generated slices) into
    outdir. Returns the truth dict."""
    return write_phantom(outdir, make_phantom(spec))
