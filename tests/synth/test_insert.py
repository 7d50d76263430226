"""Synthetic hemorrhage inserted into a real series (ichnode.synth.insert): exact truth, physics, writer.

The real-data tests use ../shared/data/cq500-ct0 and skip when it is absent. The background is loaded
and prepared once per module and cropped to a slab of slices (supratentorial brain) to stay fast.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi

from ichnode.domain import Volume
from ichnode.synth.background import BONE_HU, SKULL_HU, reformat_thick
from ichnode.synth.insert import (Background, InsertSpec, apply_blood, load_background_volume, make_case,
                                  prepare_background)

from tests.helpers import SHARED_DATA

CQ500 = SHARED_DATA / "cq500-ct0"
SLAB = slice(70, 200)  # skull base excluded, vertex excluded: brain, ventricles, convexity


def _need_data():
    if not CQ500.is_dir():
        pytest.skip(f"real data absent: {CQ500} (see ../shared/data/README.md)")


@pytest.fixture(scope="module")
def source() -> Volume:
    _need_data()
    vol = load_background_volume(CQ500)
    return replace(vol, hu=np.ascontiguousarray(vol.hu[SLAB]), datasets=vol.datasets[SLAB])


@pytest.fixture(scope="module")
def background(source) -> Background:
    return prepare_background(source)


# --- without real data -------------------------------------------------------------------------------

def test_apply_blood_keeps_noise_and_reaches_blood_density():
    rng = np.random.default_rng(0)
    bg = (35.0 + 6.0 * rng.standard_normal((20, 40, 40))).astype(np.float32)
    frac = np.zeros_like(bg)
    frac[5:15, 10:30, 10:30] = 1.0
    out = apply_blood(bg, frac, np.full_like(bg, 65.0), (0.6, 0.45, 0.45))
    core = (slice(7, 13), slice(13, 27), slice(13, 27))
    assert abs(float(out[core].mean()) - 65.0) < 1.5
    assert 0.8 < float(out[core].std()) / float(bg[core].std()) < 1.2  # the background's noise stays
    assert np.array_equal(out[frac == 0][:100], bg[frac == 0][:100])


def test_thick_reformat_keeps_integral():
    frac = np.random.default_rng(1).random((40, 8, 8)).astype(np.float32)
    vol = Volume("1.2", "1.2.3", frac.copy(), (0.625, 0.5, 0.5), ())
    thick, f5 = reformat_thick(vol, 5.0, frac)
    assert thick.spacing_mm[0] == 5.0 and f5.shape[0] == 5
    assert abs(float(f5.sum()) * 5.0 - float(frac.sum()) * 0.625) < 1e-3 * float(frac.sum())


# --- real background ---------------------------------------------------------------------------------

@pytest.mark.parametrize("subtype,location,volume", [("iph", "deep", 15.0), ("sdh", "parietal", 30.0),
                                                     ("edh", "temporal", 15.0), ("sah", "frontal", 10.0),
                                                     ("ivh", None, 10.0)])
def test_truth_volume_and_lesion_inside_cranium(background, subtype, location, volume):
    case = make_case(background, InsertSpec(subtype, volume, location=location, seed=3))
    got = float(case.fraction.sum(dtype=np.float64)) * case.volume.voxel_ml
    assert got == pytest.approx(case.truth["volume_ml"], rel=1e-4)
    assert got == pytest.approx(volume, rel=0.02)
    anat = background.anatomy
    blood = case.fraction > 0
    assert not (blood & ~anat.cranium).any(), "blood outside the skull"
    assert not (blood & (background.volume.hu > BONE_HU)).any(), "blood in bone"


def test_blood_density_and_noise_in_core(background):
    case = make_case(background, InsertSpec("iph", 20.0, location="deep", seed=1))
    core = ndi.binary_erosion(case.fraction >= 0.999, iterations=3)
    assert core.sum() > 1000
    lo, hi = 62 - 6, 72 + 6  # lesions.BLOOD_HU["iph"] with heterogeneity
    assert lo < float(np.median(case.volume.hu[core])) < hi
    # Texture: residual about a 1-voxel local mean, in the same voxels before and after insertion.
    after = case.volume.hu - ndi.gaussian_filter(case.volume.hu, 1.0)
    before = background.volume.hu - ndi.gaussian_filter(background.volume.hu, 1.0)
    ratio = float(after[core].std()) / float(before[core].std())
    assert 0.7 < ratio < 1.3, ratio


def test_mirror_flips_truth(background):
    spec = InsertSpec("edh", 10.0, location="frontal", side="left", seed=2)
    plain, mirrored = make_case(background, spec), make_case(background, replace(spec, mirror=True))
    assert np.array_equal(mirrored.fraction, plain.fraction[:, :, ::-1])
    assert mirrored.truth["side"] == "right" and plain.truth["side"] == "left"
    assert mirrored.truth["volume_ml"] == pytest.approx(plain.truth["volume_ml"], rel=1e-6)


def test_thick_slab_keeps_truth_volume(background):
    spec = InsertSpec("sdh", 15.0, location="frontal", seed=4)
    thin, thick = make_case(background, spec), make_case(background, replace(spec, thickness_mm=5.0))
    assert thick.volume.spacing_mm[0] == pytest.approx(5.0)
    assert thick.truth["volume_ml"] == pytest.approx(thin.truth["volume_ml"], rel=0.01)
    assert 0 < thick.fraction.max() <= 1.0 + 1e-6


VESSEL_HU = 90.0  # unenhanced blood and brain stay under it


def test_remove_enhancement_leaves_no_enhanced_cluster(source, background):
    """No enhanced vessel is left: nothing inside the cranium away from bone above VESSEL_HU (the
    dura, falx and veins between ENHANCED_HU and it are brought down too, to the blood pool)."""
    anat = background.anatomy
    hu = background.volume.hu
    bone_zone = ndi.binary_dilation(source.hu > SKULL_HU, iterations=2)
    before = anat.cranium & ~bone_zone & (ndi.gaussian_filter(source.hu, 0.7) > VESSEL_HU)
    assert before.sum() > 2000, "the background was expected to be enhanced"
    after = anat.cranium & ~bone_zone & (ndi.gaussian_filter(hu, 0.7) > VESSEL_HU)
    labels, n = ndi.label(after)
    sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(1)
    largest_ml = float(sizes.max()) * background.volume.voxel_ml
    assert largest_ml < 0.01, f"enhanced cluster of {sizes.max()} voxels left"


def test_cli_writes_readable_series_with_matching_truth(tmp_path):
    _need_data()
    from ichnode.assemble.series import read_headers, stack_geometry
    import nibabel as nib

    out = tmp_path / "case"
    result = subprocess.run([sys.executable, "-m", "ichnode.cli", "synth", str(out), "--background", str(CQ500),
                             "--subtype", "sdh", "--volume-ml", "10", "--thickness", "5", "--seed", "5",
                             "--region", "frontal"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "truth" in result.stdout
    truth = json.loads((out / "truth.json").read_text())
    headers = read_headers(sorted(out.glob("CT*.dcm")))
    geometry = stack_geometry(headers, gap_tolerance=0.5)
    assert geometry.spacing_mm == pytest.approx(5.0, abs=1e-3)
    assert geometry.tilt_deg == pytest.approx(8.5, abs=0.05)
    first = headers.datasets[0]
    assert str(first.PatientName) == "ICHNODE^SYNTH" and str(first.PatientID).startswith("SYNTH-")
    assert "SYNTHETIC" in first.SeriesDescription
    fraction = nib.load(out / "truth_fraction.nii.gz").get_fdata()
    labels = nib.load(out / "truth_mask.nii.gz").get_fdata()
    assert fraction.shape == (first.Columns, first.Rows, len(headers.datasets))
    assert float(fraction.sum()) * truth["voxel_ml"] == pytest.approx(truth["volume_ml"], rel=1e-3)
    assert float((labels == 4).sum()) * truth["voxel_ml"] == pytest.approx(truth["label_volume_ml"], rel=1e-3)
    assert truth["volume_ml"] == pytest.approx(10.0, rel=0.02) and truth["contrast_removed"] is True
