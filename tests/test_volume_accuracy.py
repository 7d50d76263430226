"""Segmented volume against synthetic ground truth, for every subtype at 5 mm and 0.625 mm, on the
phantoms with dural sinuses, falx, tentorium, calcifications, cupping and the head holder. A
regression check only: the engine's accuracy is measured on lesions inserted into real anatomy
(benchmarks/real_anatomy.py, docs/models/real-ct.md)."""
import pydicom
import pytest

from ichnode.config import load_config
from ichnode.offline import process_folder
from ichnode.results.read import sr_value
from ichnode.synth import SynthSpec, write_series

SIZED = ["iph", "ivh", "sdh", "edh"]
# Within 15% of truth, except 5 mL on 5 mm slices: 30%. Measured (seed 7, matrix 256, segmented vs
# truth, 5 / 0.625 mm): 15 mL: IPH +1/-2%, IVH +1/+0%, SDH +2/+1%, EDH +8/-2%; 5 mL: IPH +18/+1%,
# IVH +15/+1%, SDH +26/+7%, EDH +28/+3%. A 5 mL collection on 5 mm slices is over-read because its
# voxels in bone's partial-volume rim count whole; on lesions inserted into real anatomy the same
# cases read +36 to +49% for SDH/EDH (docs/models/real-ct.md). Subarachnoid blood is not sized:
# thin collections in sulci stay under the density a lesion must have to start
# (seed_min_median_hu), so a small SAH is under-read or missed (and the demo's 25 mL SAH reads
# +70%); what is asserted for it is that this 15 mL case is not over-read.
TOLERANCE = {(5.0, 5.0): 0.30}


@pytest.mark.parametrize("volume_ml", [15.0, 5.0])
@pytest.mark.parametrize("thickness, matrix", [(5.0, 256), (0.625, 256)])
@pytest.mark.parametrize("subtype", SIZED)
def test_segmented_volume_within_15_percent(tmp_path, subtype, thickness, matrix, volume_ml):
    truth, segmented, abc2 = _segmented(tmp_path, subtype, thickness, matrix, volume_ml)
    assert segmented == pytest.approx(truth, rel=TOLERANCE.get((thickness, volume_ml), 0.15))
    assert abc2 is not None and abc2 > 0


@pytest.mark.parametrize("thickness", [5.0, 0.625])
def test_subarachnoid_blood_of_15_ml_is_not_over_read(tmp_path, thickness):
    truth, segmented, _ = _segmented(tmp_path, "sah", thickness, 256, 15.0)
    assert (segmented or 0.0) <= 1.15 * truth


def _segmented(tmp_path, subtype, thickness, matrix, volume_ml):
    truth = write_series(tmp_path / "in", SynthSpec(subtype=subtype, volume_ml=volume_ml,
                                                    thickness_mm=thickness, matrix=matrix, seed=7))
    assert truth["volume_ml"] >= 0.95 * volume_ml
    (row,) = process_folder(tmp_path / "in", tmp_path / "out", load_config())
    assert row["outcome"] == "analysed", row["reason"]
    sr = pydicom.dcmread(next(f for f in row["files"] if "/SR_" in f))
    segmented = sr_value(sr, "All hemorrhage", "Volume", "segmentation")
    abc2 = sr_value(sr, "Largest lesion", "Volume", "ABC/2")
    print(f"{subtype} {thickness} mm: truth {truth['volume_ml']:.2f} segmented {segmented} ABC/2 {abc2}")
    return truth["volume_ml"], segmented, abc2


def test_no_hemorrhage_gives_little_or_nothing(tmp_path):
    write_series(tmp_path / "in", SynthSpec(subtype="none", matrix=256, seed=8))
    (row,) = process_folder(tmp_path / "in", tmp_path / "out", load_config())
    assert row["outcome"] == "analysed"
    assert row["total_ml"] < 0.5
