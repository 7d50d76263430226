"""Readers of the public hemorrhage data sets (RSNA 2019, CQ500, PhysioNet CT-ICH) on tiny fixtures."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ichnode.training.public_datasets import (
    load_physionet_case,
    read_cq500,
    read_physionet,
    read_rsna,
    rsna_hu,
)

RSNA_ORDER = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any")


def write_ct_dicom(path: Path, pixels: np.ndarray, intercept: float = -1024.0, *, signed: bool = True,
                   bits_stored: int = 16) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleIntercept, ds.RescaleSlope = intercept, 1
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def make_rsna(tmp_path: Path, labels: dict[str, dict[str, int]]) -> tuple[Path, Path]:
    dicom_dir = tmp_path / "stage_2_train"
    dicom_dir.mkdir()
    lines = ["ID,Label"]
    for i, (sop, lab) in enumerate(labels.items()):
        lines += [f"{sop}_{s},{lab.get(s, 0)}" for s in RSNA_ORDER]
        write_ct_dicom(dicom_dir / f"{sop}.dcm", np.arange(64).reshape(8, 8) + 1000 * i)
    csv = tmp_path / "stage_2_train.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv, dicom_dir


def test_rsna_labels_paths_and_hu(tmp_path):
    csv, dicom_dir = make_rsna(tmp_path, {"ID_0a1b": {"subdural": 1, "any": 1}, "ID_ff00": {}})
    slices = read_rsna(csv, dicom_dir)
    assert [s.sop_id for s in slices] == ["ID_0a1b", "ID_ff00"]
    assert slices[0].path == dicom_dir / "ID_0a1b.dcm"
    assert slices[0].labels == {"any": 1, "EDH": 0, "IPH": 0, "IVH": 0, "SAH": 0, "SDH": 1}
    assert set(slices[1].labels.values()) == {0}
    hu = rsna_hu(slices[1].path)
    assert hu.dtype == np.float32 and hu.shape == (8, 8)
    np.testing.assert_array_equal(hu, np.arange(64).reshape(8, 8) + 1000 - 1024)


def test_rsna_quirk_and_missing_file(tmp_path):
    csv, dicom_dir = make_rsna(tmp_path, {"ID_aa": {}, "ID_bb": {}})
    # unsigned 12-bit, intercept 0, value 4072: (4072 + 1000) - 4096 = 976, intercept -1000 -> -24 HU
    write_ct_dicom(dicom_dir / "ID_aa.dcm", np.full((8, 8), 4072), 0.0, signed=False, bits_stored=12)
    np.testing.assert_array_equal(rsna_hu(dicom_dir / "ID_aa.dcm"), np.full((8, 8), -24.0))
    (dicom_dir / "ID_bb.dcm").unlink()
    with pytest.raises(FileNotFoundError, match="ID_bb.dcm"):
        read_rsna(csv, dicom_dir)
    assert [s.sop_id for s in read_rsna(csv, dicom_dir, skip_missing=True)] == ["ID_aa"]


def test_rsna_errors(tmp_path):
    (tmp_path / "d").mkdir()
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,Value\nID_aa_any,0\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*missing column 'Label'"):
        read_rsna(bad, tmp_path / "d")
    bad.write_text("ID,Label\nID_aa_subdurall,1\n")
    with pytest.raises(ValueError, match="unknown subtype 'subdurall'"):
        read_rsna(bad, tmp_path / "d")
    bad.write_text("ID,Label\nID_aa_any,1\n")
    with pytest.raises(ValueError, match="ID_aa has no row for EDH"):
        read_rsna(bad, tmp_path / "d")


def test_cq500_majority_votes_and_folders(tmp_path):
    subtypes = ("ICH", "IPH", "IVH", "SDH", "EDH", "SAH")
    header = ["name", "Category"] + [f"R{r}:{s}" for r in (1, 2, 3) for s in subtypes + ("Fracture",)]

    def row(name, reads):  # reads: per reader, the set of positive subtypes
        return [name, "B1"] + [str(int(s in reads[r])) for r in range(3) for s in subtypes + ("Fracture",)]

    rows = [row("CQ500-CT-1", [{"ICH", "SDH"}, {"ICH", "SDH", "SAH"}, {"ICH"}]),
            row("CQ500-CT-12", [set(), {"ICH", "IPH"}, set()])]
    (tmp_path / "reads.csv").write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    (tmp_path / "CQ500CT1 CQ500CT1" / "Unknown Study" / "CT 5mm").mkdir(parents=True)
    studies = read_cq500(tmp_path / "reads.csv", tmp_path)
    a, b = studies
    assert a.name == "CQ500-CT-1" and a.folder == tmp_path / "CQ500CT1 CQ500CT1" and b.folder is None
    assert a.labels == {"ICH": 1, "IPH": 0, "IVH": 0, "SDH": 1, "EDH": 0, "SAH": 0}
    assert a.votes["SDH"] == (1, 1, 0) and a.votes["SAH"] == (0, 1, 0)
    assert set(b.labels.values()) == {0} and b.votes["ICH"] == (0, 1, 0)

    (tmp_path / "reads.csv").write_text("name,Category,R1:ICH\nCQ500-CT-1,B1,1\n")
    with pytest.raises(ValueError, match=r"reads\.csv.*missing column 'R1:IPH'"):
        read_cq500(tmp_path / "reads.csv", tmp_path)


def write_nifti(path: Path, data: np.ndarray, zooms=(0.5, 0.6, 5.0)) -> None:
    img = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms)
    nib.save(img, str(path))


def test_physionet_labels_and_volume_orientation(tmp_path):
    (tmp_path / "ct_scans").mkdir()
    (tmp_path / "masks").mkdir()
    cols = "PatientNumber,SliceNumber,Intraventricular,Intraparenchymal,Subarachnoid,Epidural,Subdural," \
           "No_Hemorrhage,Fracture_Yes_No"
    lines = [cols, "49,2,0,1,0,0,0,0,1", "49,1,0,0,0,0,0,1,0", "49,3,0,0,0,0,0,1,0",
             "50,1,0,0,0,0,1,0,0", "50,2,0,0,0,0,0,1,0", "50,3,0,0,0,0,0,1,0"]
    (tmp_path / "hemorrhage_diagnosis_raw_ct.csv").write_text("\n".join(lines) + "\n")
    ct = (np.arange(8 * 8 * 3).reshape(8, 8, 3) - 100).astype(np.int16)  # stored (i, j, k) = (x, y, z)
    mask = np.zeros((8, 8, 3), np.uint8)
    mask[6, 1, 1] = 1  # x=6, y=1, slice 2
    for n in (49, 50):
        write_nifti(tmp_path / "ct_scans" / f"{n:03d}.nii", ct)
        write_nifti(tmp_path / "masks" / f"{n:03d}.nii", mask)

    cases = read_physionet(tmp_path)
    assert [c.patient_number for c in cases] == [49, 50]
    c49 = cases[0]
    assert c49.ct_path == tmp_path / "ct_scans" / "049.nii" and c49.mask_path == tmp_path / "masks" / "049.nii"
    assert [s.slice_number for s in c49.slices] == [1, 2, 3]
    assert c49.slices[1].labels == {"any": 1, "IVH": 0, "IPH": 1, "SAH": 0, "EDH": 0, "SDH": 0}
    assert c49.slices[1].fracture == 1 and c49.slices[0].labels["any"] == 0
    assert cases[1].slices[0].labels["SDH"] == 1

    hu, m, spacing = load_physionet_case(c49)
    assert hu.shape == m.shape == (3, 8, 8) and hu.dtype == np.float32 and m.dtype == bool
    assert np.argwhere(m).tolist() == [[1, 1, 6]]  # (z, y, x)
    np.testing.assert_array_equal(hu, ct.transpose(2, 1, 0))
    assert spacing == pytest.approx((5.0, 0.6, 0.5))

    (tmp_path / "masks" / "050.nii").unlink()
    with pytest.raises(FileNotFoundError, match="050.nii"):
        read_physionet(tmp_path)
    assert len(read_physionet(tmp_path, skip_missing=True)) == 1

    (tmp_path / "hemorrhage_diagnosis_raw_ct.csv").write_text(cols.replace(",Subdural", "") + "\n")
    with pytest.raises(ValueError, match=r"hemorrhage_diagnosis_raw_ct\.csv.*missing column 'Subdural'"):
        read_physionet(tmp_path)
