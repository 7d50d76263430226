"""The real CQ500 series (JPEG Lossless, gantry tilt, one missing slice, one stray slice of
another study) through `ichnode process`."""
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from ichnode.results.read import sr_measurements, sr_texts, sr_value

from tests.helpers import SHARED_DATA, dciodvfy_errors

CQ500 = SHARED_DATA / "cq500-ct1"
STRAY = "CT000000.dcm"


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    if not CQ500.is_dir():
        pytest.skip(f"real data absent: {CQ500} (see ../shared/data/README.md)")
    out = tmp_path_factory.mktemp("cq500")
    result = subprocess.run([sys.executable, "-m", "ichnode.cli", "process", str(CQ500), "-o", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out, result


def test_stray_slice_is_its_own_series(processed):
    out, _ = processed
    stray = pydicom.dcmread(CQ500 / STRAY, stop_before_pixels=True)
    main = pydicom.dcmread(CQ500 / "CT000001.dcm", stop_before_pixels=True)
    folders = {p.name for p in out.iterdir()}
    assert folders == {str(stray.SeriesInstanceUID), str(main.SeriesInstanceUID)}
    (stray_sr,) = [pydicom.dcmread(p) for p in (out / str(stray.SeriesInstanceUID)).iterdir()]
    assert stray_sr.Modality == "SR" and "Not analysed" in sr_texts(stray_sr)
    # The main volume's SEG references 238 slices, never the stray one.
    seg = next(pydicom.dcmread(p) for p in (out / str(main.SeriesInstanceUID)).glob("SEG_*"))
    referenced = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
                  for i in s.ReferencedInstanceSequence}
    assert len(referenced) == 238 and str(stray.SOPInstanceUID) not in referenced


def test_results_are_valid_and_quantified(processed):
    out, _ = processed
    main = pydicom.dcmread(CQ500 / "CT000001.dcm", stop_before_pixels=True)
    files = sorted((out / str(main.SeriesInstanceUID)).iterdir())
    modalities = sorted(pydicom.dcmread(f, stop_before_pixels=True).Modality for f in files)
    assert modalities[:1] == ["OT"] and "SEG" in modalities and "SR" in modalities
    for f in files:
        assert dciodvfy_errors(f) == [], f.name
    sr = pydicom.dcmread(next(f for f in files if f.name.startswith("SR_")))
    assert sr.StudyInstanceUID == main.StudyInstanceUID
    # CQ500 reads: intraparenchymal + subarachnoid hemorrhage; the baseline must find something.
    assert sr_value(sr, "All hemorrhage", "Volume", "segmentation") > 1.0


def test_no_patient_identifier_in_output(processed):
    _, result = processed
    main = pydicom.dcmread(CQ500 / "CT000001.dcm", stop_before_pixels=True)
    assert str(main.PatientName) not in result.stdout + result.stderr
    assert str(main.PatientID) not in result.stdout + result.stderr


def test_models_outputs_reach_the_objects(tmp_path):
    """With every seed model enabled (config/models.yaml) their outputs are in the SR."""
    if not CQ500.is_dir():
        pytest.skip(f"real data absent: {CQ500} (see ../shared/data/README.md)")
    config = Path(__file__).resolve().parents[1] / "config" / "models.yaml"
    result = subprocess.run([sys.executable, "-m", "ichnode.cli", "process", "-c", str(config),
                             str(CQ500), "-o", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    main = pydicom.dcmread(CQ500 / "CT000001.dcm", stop_before_pixels=True)
    files = sorted((tmp_path / str(main.SeriesInstanceUID)).iterdir())
    for f in files:
        assert dciodvfy_errors(f) == [], f.name
    sr = pydicom.dcmread(next(f for f in files if f.name.startswith("SR_")))
    probability = sr_value(sr, "All hemorrhage", "Probability")
    assert probability is not None and 0.0 <= probability <= 1.0
    assert sr_value(sr, "All hemorrhage", "Volume", "model regression") is not None
    assert any(m.group.startswith("IPH") and m.name == "Probability"
               for m in sr_measurements(sr))
