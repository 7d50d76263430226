"""Small synthetic head CT (12 slices of 64 x 64) and analyses built on it, for the writer tests.

Self-contained on purpose (no ichnode.synth): the writers only need source headers with the
mandatory CT Image attributes, HU arrays and findings.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from ichnode.domain import ABC2, Analysis, Findings, ModelInfo, Quantities, Volume
from ichnode.ids import result_uid

NZ, NY, NX = 12, 64, 64
SPACING = (5.0, 3.0, 3.0)  # slice, row, column (mm)
STUDY_UID = result_uid("test-study", "", "study")
SERIES_UID = result_uid("test-series", "", "series")
FOR_UID = result_uid("test-series", "", "frame-of-reference")
CLASSES = ("IPH", "IVH", "SAH")  # SAH stays empty: a described segment without pixels
MODEL = ModelInfo(name="test-engine", version="1.2.3")


def make_ct_headers(nz: int = NZ, series_uid: str = SERIES_UID) -> tuple[Dataset, ...]:
    """CT Image Storage headers (no PixelData, like Volume.datasets), in increasing z."""
    out = []
    for i in range(nz):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        sop_uid = result_uid(series_uid, "", "ct", i)
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        # Patient / study
        ds.PatientName = "Test^Synthetic"
        ds.PatientID = "SYN0001"
        ds.PatientBirthDate = "19500101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = STUDY_UID
        ds.StudyDate = "20240102"
        ds.StudyTime = "101500"
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.AccessionNumber = "ACC0001"
        # Series / equipment / frame of reference
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 2
        ds.SeriesDescription = "Head 5mm"
        ds.BodyPartExamined = "HEAD"
        ds.PatientPosition = "HFS"
        ds.Manufacturer = "Synthetic"
        ds.FrameOfReferenceUID = FOR_UID
        ds.PositionReferenceIndicator = ""
        # Image
        ds.InstanceNumber = i + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.AcquisitionNumber = 1
        ds.ContentDate = ds.StudyDate
        ds.ContentTime = ds.StudyTime
        ds.PatientOrientation = ""
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-96.0, -96.0, float(i) * SPACING[0]]
        ds.PixelSpacing = [SPACING[1], SPACING[2]]
        ds.SliceThickness = SPACING[0]
        ds.SliceLocation = float(i) * SPACING[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = NY, NX
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.KVP = 120
        ds.WindowCenter = 40
        ds.WindowWidth = 80
        out.append(ds)
    return tuple(out)


def _ellipsoid(center, radii) -> np.ndarray:
    z, y, x = np.ogrid[:NZ, :NY, :NX]
    cz, cy, cx = center
    rz, ry, rx = radii
    return ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def make_volume(series_uid: str = SERIES_UID) -> Volume:
    rng = np.random.default_rng(7)
    hu = rng.normal(30.0, 4.0, (NZ, NY, NX)).astype(np.float32)
    hu[:, :4, :] = -1000.0  # air above the head: the banner area is black before burning in
    return Volume(STUDY_UID, series_uid, hu, SPACING, make_ct_headers(series_uid=series_uid))


def make_analysis(volume: Volume, *, model: ModelInfo = MODEL, empty: bool = False) -> Analysis:
    labels = np.zeros(volume.hu.shape, np.uint8)
    if not empty:
        labels[_ellipsoid((5.5, 30, 24), (2.6, 8, 6))] = 1  # IPH on slices 3..8
        labels[_ellipsoid((6, 40, 44), (1.2, 3, 3))] = 2  # IVH on slices 5..7
    hu = volume.hu.copy()
    hu[labels > 0] = 70.0
    volume = Volume(volume.study_uid, volume.series_uid, hu, volume.spacing_mm, volume.datasets)
    heat = np.zeros(labels.shape, np.float32)
    if not empty:
        z, y, x = np.ogrid[:NZ, :NY, :NX]
        heat = np.exp(-(((z - 5.5) / 3) ** 2 + ((y - 30) / 10) ** 2 + ((x - 24) / 10) ** 2)).astype(np.float32)
    by_class = {c: float((labels == k).sum()) * volume.voxel_ml for k, c in enumerate(CLASSES, 1)}
    findings = Findings(
        model=model,
        labels=labels,
        segment_classes=CLASSES,
        probabilities={"any": 0.97, "IPH": 0.95, "IVH": 0.61, "SAH": 0.04} if not empty else {"any": 0.02},
        heatmap=heat,
        iph_location=None if empty else "deep",
        model_volume_ml=None if empty else 9.5,
        prognosis_probability=None if empty else 0.21,
    )
    quantities = Quantities(
        volume_ml_by_class=by_class,
        total_ml=sum(by_class.values()),
        lesion_count=0 if empty else 2,
        largest_lesion_ml=by_class["IPH"],
        abc2=None if empty else ABC2(a_mm=48.0, b_mm=36.0, c_mm=25.0, slice_index=5),
    )
    return Analysis(volume=volume, datasets=volume.datasets, findings=findings, quantities=quantities)


@pytest.fixture(scope="session")
def volume() -> Volume:
    return make_volume()


@pytest.fixture(scope="session")
def analysis(volume) -> Analysis:
    return make_analysis(volume)


@pytest.fixture(scope="session")
def analysis_empty(volume) -> Analysis:
    """Analysed, nothing found: all-empty label volume."""
    return make_analysis(volume, empty=True)


@pytest.fixture(scope="session")
def analysis_not_analysed() -> Analysis:
    headers = make_ct_headers(nz=3)
    return Analysis(volume=None, datasets=headers, not_analysed="Too few slices: 3 (at least 10 needed)")


@pytest.fixture(scope="session")
def build_analysis():
    """make_analysis, for tests that need a variant (other model version, empty labels)."""
    return make_analysis


@pytest.fixture
def roundtrip(tmp_path):
    """Write a dataset as a DICOM file (preamble + meta header), read it back: (path, dataset)."""
    counter = iter(range(1_000_000))

    def run(ds: Dataset) -> tuple[Path, Dataset]:
        path = tmp_path / f"obj{next(counter)}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        return path, pydicom.dcmread(path)

    return run


@pytest.fixture(scope="session")
def dciodvfy():
    """Callable returning dciodvfy's "Error" lines for a file; skips when dciodvfy is absent."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) not installed: IOD validation skipped")

    def run(path: Path) -> list[str]:
        proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
        lines = (proc.stdout + proc.stderr).splitlines()
        return [line for line in lines if line.startswith("Error")]

    return run
