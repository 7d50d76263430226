"""Synthetic head CT generator: volumes, HU realism, determinism and the written DICOM series."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from ichnode.synth import SynthSpec, make_phantom, write_series
from ichnode.synth import anatomy as an
from ichnode.synth import anatomy_details as det

JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
SUBTYPES = ("iph", "ivh", "sah", "sdh", "edh")


def _read_series(folder):
    dss = [pydicom.dcmread(p) for p in sorted(folder.glob("CT*.dcm"))]
    normal = np.cross(*np.reshape(np.asarray(dss[0].ImageOrientationPatient, float), (2, 3)))
    return sorted(dss, key=lambda d: float(np.asarray(d.ImagePositionPatient, float) @ normal))


def _hu(ds):
    return ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One small series written raw, reused by the read-back tests."""
    out = tmp_path_factory.mktemp("raw")
    spec = SynthSpec(matrix=128, seed=3, subtype="iph", volume_ml=15, drop_slices=(7, 8))
    return spec, out, write_series(out, spec)


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_volume_within_5_percent(subtype):
    for vol, matrix in ((20.0, 256), (4.0, 128)):
        ph = make_phantom(SynthSpec(subtype=subtype, volume_ml=vol, matrix=matrix, seed=1))
        assert abs(ph.volume_ml / vol - 1) <= 0.05, (subtype, vol, ph.volume_ml)
        assert ph.voxel_count * ph.grid.voxel_ml == pytest.approx(ph.volume_ml)
        # The hemorrhage is what the labels say and lies inside the head.
        assert np.array_equal(ph.mask, ph.labels == an.BLOOD)
        assert ph.truth()["bbox"] is not None


def test_thin_irregular_and_infratentorial_volumes():
    for spec in (SynthSpec(matrix=128, thickness_mm=0.625, shape="irregular", location="deep", volume_ml=30),
                 SynthSpec(matrix=128, location="infratentorial", volume_ml=8, seed=2)):
        ph = make_phantom(spec)
        assert ph.hu.shape[0] == round(150 / spec.thickness_mm)
        assert abs(ph.volume_ml / spec.volume_ml - 1) <= 0.05
        assert ph.truth()["location"] == spec.location


def test_none_has_no_hemorrhage():
    ph = make_phantom(SynthSpec(subtype="none", matrix=128))
    assert ph.voxel_count == 0 and ph.truth()["centroid_mm"] is None


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_hemorrhage_attenuation(subtype):
    ph = make_phantom(SynthSpec(subtype=subtype, matrix=256, seed=2))
    assert 55 <= ph.blood_hu <= 80
    # Median over the mask: thin collections carry partial volume with bone or CSF.
    assert 50 <= np.median(ph.hu[ph.mask]) <= 85
    core = ndimage.binary_erosion(ph.mask, np.ones((1, 3, 3), bool))
    if subtype in ("iph", "ivh"):
        assert 55 <= ph.hu[core].mean() <= 80


def test_tissue_attenuation_is_head_like():
    ph = make_phantom(SynthSpec(subtype="none", matrix=256))
    lab, hu = ph.labels, ph.hu
    ny, nx = hu.shape[1:]
    yy, xx = np.ogrid[:ny, :nx]
    r = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2)
    circle, outside = r < ny / 2 - 2, r > ny / 2 + 0.5
    for tissue in (an.GM, an.WM):
        assert 20 <= hu[lab == tissue].mean() <= 45
    assert hu[lab == an.GM].mean() > hu[lab == an.WM].mean() + 4  # grey-white differentiation
    assert hu[np.isin(lab, an.BONE_LABELS)].mean() > 600
    assert hu[(lab == an.BONE)].max() > 1200
    assert hu[(lab == an.AIR) & circle].mean() < -900
    assert np.all(hu[:, outside] == -3024)  # padding outside the reconstruction circle
    csf_core = ndimage.binary_erosion(lab == an.CSF, np.ones((1, 3, 3), bool))
    assert -5 <= np.median(hu[csf_core]) <= 20  # mean: tangential cuts near the vertex are bone-blurred
    wm_core = ndimage.binary_erosion(lab == an.WM, np.ones((3, 7, 7), bool))
    assert 4 <= hu[wm_core].std() <= 8  # ~6 HU noise
    # Head size: ~150 mm wide, ~185 mm long at the widest level (the head holder is not head).
    head = ~np.isin(lab[ph.hu.shape[0] // 2], (an.AIR, det.HOLDER, det.CUSHION))
    rows, cols = np.nonzero(head)
    assert 140 <= (np.ptp(cols) + 1) * ph.spacing_mm[2] <= 165
    assert 175 <= (np.ptp(rows) + 1) * ph.spacing_mm[1] <= 200


def test_deterministic():
    spec = SynthSpec(subtype="sdh", matrix=128, seed=11)
    a, b = make_phantom(spec), make_phantom(spec)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.mask, b.mask)
    c = make_phantom(SynthSpec(subtype="sdh", matrix=128, seed=12))
    assert not np.array_equal(a.hu, c.hu)


def test_written_series_reads_back(written):
    spec, out, truth = written
    ph = make_phantom(spec)
    dss = _read_series(out)
    nz = ph.hu.shape[0]
    kept = [k for k in range(nz) if k not in spec.drop_slices]
    assert [int(d.InstanceNumber) - 1 for d in dss] == kept
    assert not (out / "CT0007.dcm").exists() and (out / "CT0006.dcm").exists()
    for d, k in zip(dss, kept):
        assert d.Modality == "CT" and d.Manufacturer == "ichnode-synth"
        assert d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert int(d.ImagesInAcquisition) == len(kept)
        assert np.allclose(np.asarray(d.ImagePositionPatient, float), ph.positions[k], atol=1e-4)
        assert np.allclose(np.asarray(d.ImageOrientationPatient, float), [1, 0, 0, 0, 1, 0])
        assert np.allclose(np.asarray(d.PixelSpacing, float), 230 / 128)
        assert float(d.SliceThickness) == 5.0
        assert np.array_equal(_hu(d), ph.hu[k])
    d0 = dss[0]
    assert d0.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert int(d0.PixelPaddingValue) == -2000 and int(d0.pixel_array.min()) == -2000
    assert (d0.StudyInstanceUID, d0.SeriesInstanceUID) == (truth["study_uid"], truth["series_uid"])
    assert d0.ImageType == ["ORIGINAL", "PRIMARY", "AXIAL"] and d0.BodyPartExamined == "HEAD"
    assert float(d0.WindowCenter) == 40 and float(d0.WindowWidth) == 80 and d0.PatientPosition == "HFS"
    assert len({d.SOPInstanceUID for d in dss}) == len(dss)
    # Positions step 5 mm along the normal, with the gap where slices were dropped.
    z = [float(d.ImagePositionPatient[2]) for d in dss]
    assert np.allclose(np.diff(z), [15.0 if k == 6 else 5.0 for k in kept[:-1]])
    on_disk = json.loads((out / "truth.json").read_text())
    assert on_disk == truth
    for key in ("subtype", "volume_ml", "voxel_count", "spacing_mm", "slices", "matrix", "study_uid",
                "series_uid", "location", "tilt_deg", "transfer_syntax", "centroid_mm", "bbox", "dropped_slices"):
        assert key in truth
    assert truth["dropped_slices"] == [7, 8] and truth["slices"] == nz and truth["written_slices"] == nz - 2
    assert truth["voxel_count"] == ph.voxel_count  # counted over all generated slices
    assert np.array_equal(np.load(out / "truth_mask.npz")["mask"], ph.mask)


def test_uids_deterministic(written, tmp_path):
    spec, out, truth = written
    again = write_series(tmp_path, spec)
    assert (again["study_uid"], again["series_uid"]) == (truth["study_uid"], truth["series_uid"])
    a, b = pydicom.dcmread(out / "CT0003.dcm"), pydicom.dcmread(tmp_path / "CT0003.dcm")
    assert a.SOPInstanceUID == b.SOPInstanceUID
    other = write_series(tmp_path / "o", SynthSpec(matrix=64, seed=4, study_uid="1.2.3.4", series_uid="1.2.3.4.5"))
    assert (other["study_uid"], other["series_uid"]) == ("1.2.3.4", "1.2.3.4.5")


@pytest.mark.skipif(shutil.which("dcmcjpeg") is None, reason="DCMTK dcmcjpeg not installed")
def test_jpeg_lossless_round_trip(written, tmp_path):
    spec, out, _ = written
    truth = write_series(tmp_path, replace(spec, jpeg_lossless=True))
    assert truth["transfer_syntax"] == JPEG_LOSSLESS_SV1
    raw, jpg = _read_series(out), _read_series(tmp_path)
    assert len(raw) == len(jpg)
    for a, b in zip(raw, jpg):
        assert b.file_meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
        assert a.InstanceNumber == b.InstanceNumber  # (a different series: UIDs differ)
        assert b.SOPInstanceUID == b.file_meta.MediaStorageSOPInstanceUID
        assert np.array_equal(a.pixel_array, b.pixel_array)
    assert (tmp_path / "CT0000.dcm").stat().st_size < (out / "CT0000.dcm").stat().st_size


def test_gantry_tilt(tmp_path):
    tilt = 15.0
    spec = SynthSpec(matrix=128, tilt_deg=tilt, volume_ml=15, seed=5)
    truth = write_series(tmp_path, spec)
    dss = _read_series(tmp_path)
    t = math.radians(tilt)
    for d in dss:
        assert np.allclose(np.asarray(d.ImageOrientationPatient, float), [1, 0, 0, 0, math.cos(t), -math.sin(t)], atol=1e-6)
        assert float(d.GantryDetectorTilt) == tilt
    pos = np.array([np.asarray(d.ImagePositionPatient, float) for d in dss])
    step = np.diff(pos, axis=0)
    assert np.allclose(step[:, :2], 0, atol=1e-4) and np.all(step[:, 2] > 0)  # table moves along z only
    normal = np.array([0, math.sin(t), math.cos(t)])
    assert np.allclose(step @ normal, 5.0, atol=1e-3)  # contiguous along the tilted normal
    assert truth["spacing_mm"][0] == pytest.approx(5.0)
    assert abs(truth["volume_ml"] / 15 - 1) <= 0.05
    # The lesion is the same object in patient space, whatever the sampling planes.
    straight = make_phantom(SynthSpec(matrix=128, volume_ml=15, seed=5)).truth()
    assert np.allclose(truth["centroid_mm"], straight["centroid_mm"], atol=1.5)


def test_eligibility_variants(tmp_path):
    truth = write_series(tmp_path / "mr", SynthSpec(matrix=64, modality="MR", contrast=True, subtype="none"))
    d = pydicom.dcmread(tmp_path / "mr" / truth["files"][0])
    assert d.Modality == "MR" and d.ContrastBolusAgent and truth["volume_ml"] == 0
    truth = write_series(tmp_path / "cor", SynthSpec(matrix=64, orientation="coronal", volume_ml=10))
    d = pydicom.dcmread(tmp_path / "cor" / truth["files"][0])
    assert np.allclose(np.asarray(d.ImageOrientationPatient, float), [1, 0, 0, 0, 0, -1])
    assert abs(truth["volume_ml"] / 10 - 1) <= 0.05
    with pytest.raises(ValueError):
        SynthSpec(subtype="xyz")


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools dciodvfy not installed")
def test_dciodvfy_reports_no_errors(written):
    _, out, truth = written
    res = subprocess.run(["dciodvfy", str(out / truth["files"][3])], capture_output=True, text=True, timeout=60)
    report = res.stdout + res.stderr
    assert "CTImage" in report
    assert not [line for line in report.splitlines() if line.startswith("Error")], report


def test_to_volume():
    ph = make_phantom(SynthSpec(matrix=64, subtype="none"))
    vol = ph.to_volume()
    assert vol.hu.dtype == np.float32 and vol.hu.shape == ph.hu.shape
    assert vol.spacing_mm == ph.spacing_mm and vol.voxel_ml == pytest.approx(ph.grid.voxel_ml)


# --- details from the real series' statistics (anatomy_details.py, docs/models/real-ct.md) -------
DETAIL_SEED = 22  # pineal, both glomus calcifications and a falx plaque are drawn for this seed


@pytest.fixture(scope="module")
def detailed():
    """The same SDH phantom with and without the anatomy details, 1.25 mm slices."""
    spec = SynthSpec(subtype="sdh", volume_ml=12, matrix=192, thickness_mm=1.25, seed=DETAIL_SEED)
    return make_phantom(spec), make_phantom(spec, details=False)


def _world(ph, idx):
    return ph.grid.world(idx).astype(np.float32).T


def _depths(ph):
    """Depth below the inner table or floor (h) of every voxel centre, (z, y, x)."""
    grid = ph.grid
    k, i, j = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    X, Y, Z = _world(ph, np.stack([k.ravel(), i.ravel(), j.ravel()], 1))
    return an.Anatomy(ph.spec.seed).inner(X, Y, Z)[1].reshape(grid.shape)


def test_details_leave_the_hemorrhage_unchanged(detailed):
    full, plain = detailed
    assert np.array_equal(full.mask, plain.mask) and full.truth() == plain.truth()
    assert np.array_equal(full.labels == an.BLOOD, full.mask)  # blood stays blood over the anatomy
    for subtype in ("iph", "ivh", "sah", "edh"):
        spec = SynthSpec(subtype=subtype, volume_ml=6, matrix=96, seed=DETAIL_SEED)
        a, b = make_phantom(spec), make_phantom(spec, details=False)
        assert np.array_equal(a.mask, b.mask) and a.truth() == b.truth(), subtype


def test_sinuses_and_dura_at_non_contrast_density(detailed):
    full, _ = detailed
    d = an.Anatomy(DETAIL_SEED).details
    lab, hu = full.labels, full.hu
    sinus = lab == det.SINUS
    assert 45 <= d.sinus_hu <= 60 and 40 <= d.dura_hu <= 55
    assert sinus.sum() * full.grid.voxel_ml > 5.0  # SSS, transverse, sigmoid, straight sinus, torcula
    bone_near = ndimage.binary_dilation(np.isin(lab, an.BONE_LABELS), np.ones((1, 3, 3), bool))
    core = ndimage.binary_erosion(sinus, np.ones((1, 3, 3), bool)) & ~bone_near
    assert 42 <= np.median(hu[core]) <= 68, np.median(hu[core])
    # Where the sinuses lie: the SSS at the midline under the vault, the transverse sinuses on
    # both sides low at the back.
    idx = np.argwhere(sinus)
    X, Y, Z = _world(full, idx)
    assert np.any((np.abs(X) < 3) & (Z > 50)) and np.any((np.abs(X) < 3) & (Y < -40) & (Z > 20))
    for s in (-1, 1):
        assert np.any((s * X > 25) & (Y > 30) & (Z < -20)), s
    # Falx and tentorium: thin dural sheets denser than the CSF around them.
    csf_core = ndimage.binary_erosion(lab == an.CSF, np.ones((1, 3, 3), bool))
    assert np.median(hu[lab == an.DURA]) > np.median(hu[csf_core]) + 10


def test_calcifications_follow_the_seed(detailed):
    full, _ = detailed
    d = an.Anatomy(DETAIL_SEED).details
    assert d.pineal and d.glomus[-1][0] and d.glomus[1][0] and d.falx_plaque
    calc = full.labels == det.CALC
    X, Y, Z = _world(full, np.argwhere(calc))
    hu = full.hu[calc]
    pineal = (np.abs(X) < 5) & (np.abs(Y - 15.5) < 6) & (np.abs(Z - 2) < 6)
    assert pineal.sum() * full.grid.voxel_ml > 0.005 and hu[pineal].max() > 100
    for s in (-1, 1):  # glomus in both atria
        glomus = (s * X > 8) & (s * X < 23) & (Y > 22) & (Y < 42)
        assert glomus.any() and hu[glomus].max() > 100, s
    assert 150 <= d.calc_hu <= 350 and np.any(full.labels == det.PLAQUE)
    # A seed without a pineal calcification has none.
    other = next(s for s in range(50) if not an.Anatomy(s).details.pineal)
    ph = make_phantom(SynthSpec(subtype="none", matrix=96, thickness_mm=2.5, seed=other))
    X, Y, Z = _world(ph, np.argwhere(ph.labels == det.CALC))
    assert not np.any((np.abs(X) < 5) & (np.abs(Y - 15.5) < 6) & (np.abs(Z - 2) < 6))


def test_head_holder_outside_the_head(detailed):
    full, plain = detailed
    anat = an.Anatomy(DETAIL_SEED)
    for label, lo, hi in ((det.HOLDER, 200, 420), (det.CUSHION, -700, -400)):
        m = full.labels == label
        assert m.any() and not np.any(plain.labels == label)
        X, Y, Z = _world(full, np.argwhere(m))
        assert anat.depth(X, Y, Z).max() < -5.0  # 5 mm clear of the skin, far from the cavity
        assert Y.mean() > 0  # behind the head (patient supine)
        assert lo <= np.median(full.hu[m]) <= hi, (label, np.median(full.hu[m]))
    # The shell arms peak like the real holder (315-367 HU measured).
    assert 280 <= np.percentile(full.hu[full.labels == det.HOLDER], 95) <= 420


def test_cupping_and_streaks(detailed):
    full, plain = detailed
    h = _depths(full)
    diff = full.hu.astype(np.float32) - plain.hu  # same noise: the difference is the details
    changed = ndimage.binary_dilation(full.labels != plain.labels, np.ones((3, 5, 5), bool))
    brain = np.isin(full.labels, an.BRAIN_LABELS) & ~changed  # away from sinuses, calcifications
    shallow, deep = brain & (h > 2) & (h < 3), brain & (h > 35)
    assert 4 <= np.median(diff[shallow]) <= 13, np.median(diff[shallow])  # measured +9..13 HU at 2-3 mm
    assert abs(np.median(diff[deep])) <= 1
    # Streaks in the posterior fossa at the petrous level, none high in the head.
    Z = full.grid.positions[:, 2][:, None, None]
    infra = brain & (np.abs(Z + 44) < 6) & (h > 12)
    assert np.percentile(diff[infra], 2) < -4  # the dark band between the petrous bones
    high = deep & (Z > 30)
    assert np.abs(diff[high]).max() <= 2
