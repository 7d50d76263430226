"""The real CQ500-CT-0 series through `ichnode process`: JPEG Lossless, gantry tilt, one missing
slice, and one stray slice of another study (CQ500-CT-1). By the official reads it is negative (2 of
3 radiologists: no hemorrhage) and it is contrast-enhanced although its header does not say so (an
injection protocol in its description, enhanced arteries and sinuses). The node must answer "not
analysed: contrast-enhanced" with the evidence, never a bleed."""
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import yaml

from ichnode.results.read import sr_measurements, sr_texts, sr_value

from tests.helpers import SHARED_DATA, dciodvfy_errors

CQ500 = SHARED_DATA / "cq500-ct0"
STRAY = "CT000000.dcm"
MODELS_CONFIG = Path(__file__).resolve().parents[1] / "config" / "models.yaml"


def _process(out: Path, config: Path | None = None) -> subprocess.CompletedProcess:
    if not CQ500.is_dir():
        pytest.skip(f"real data absent: {CQ500} (see ../shared/data/README.md)")
    args = [sys.executable, "-m", "ichnode.cli", "process", str(CQ500), "-o", str(out)]
    if config is not None:
        args[4:4] = ["-c", str(config)]
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def _main_series_files(out: Path) -> list[Path]:
    main = pydicom.dcmread(CQ500 / "CT000001.dcm", stop_before_pixels=True)
    return sorted((out / str(main.SeriesInstanceUID)).iterdir())


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    out = tmp_path_factory.mktemp("cq500")
    return out, _process(out)


def test_stray_slice_is_its_own_series(processed):
    out, _ = processed
    stray = pydicom.dcmread(CQ500 / STRAY, stop_before_pixels=True)
    main = pydicom.dcmread(CQ500 / "CT000001.dcm", stop_before_pixels=True)
    assert {p.name for p in out.iterdir()} == {str(stray.SeriesInstanceUID), str(main.SeriesInstanceUID)}
    (stray_sr,) = [pydicom.dcmread(p) for p in (out / str(stray.SeriesInstanceUID)).iterdir()]
    assert stray_sr.Modality == "SR" and "Not analysed" in sr_texts(stray_sr)


def test_contrast_series_is_not_analysed_with_the_evidence(processed):
    out, _ = processed
    files = _main_series_files(out)
    assert [pydicom.dcmread(f, stop_before_pixels=True).Modality for f in files] == ["SR"]
    assert dciodvfy_errors(files[0]) == []
    texts = " ".join(sr_texts(pydicom.dcmread(files[0])))
    assert "Not analysed" in texts and "contrast-enhanced" in texts
    assert "mL of intracranial tissue at 120-600 HU" in texts  # the evidence, read from the images


def test_no_patient_identifier_in_output(processed):
    _, result = processed
    main = pydicom.dcmread(CQ500 / "CT000001.dcm", stop_before_pixels=True)
    assert str(main.PatientName) not in result.stdout + result.stderr
    assert str(main.PatientID) not in result.stdout + result.stderr


def test_contrast_check_off_every_model_reaches_the_objects(tmp_path):
    """A site that analyses contrast series anyway (eligibility.reject_contrast: false), with every
    seed network enabled: the objects are valid, the networks' outputs are in the SR, and the 238
    slices are referenced, never the stray one."""
    config = yaml.safe_load(MODELS_CONFIG.read_text())
    config["eligibility"] = {"reject_contrast": False}
    path = tmp_path / "contrast-off.yaml"
    path.write_text(yaml.safe_dump(config))
    _process(tmp_path / "out", path)
    files = _main_series_files(tmp_path / "out")
    for f in files:
        assert dciodvfy_errors(f) == [], f.name
    sr = pydicom.dcmread(next(f for f in files if f.name.startswith("SR_")))
    probability = sr_value(sr, "All hemorrhage", "Probability")
    assert probability is not None and 0.0 <= probability <= 1.0
    assert sr_value(sr, "All hemorrhage", "Volume", "model regression") is not None
    assert any(m.group.startswith("IPH") and m.name == "Probability" for m in sr_measurements(sr))
    seg = next(pydicom.dcmread(f) for f in files if f.name.startswith("SEG_"))
    referenced = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
                  for i in s.ReferencedInstanceSequence}
    stray = pydicom.dcmread(CQ500 / STRAY, stop_before_pixels=True)
    assert len(referenced) == 238 and str(stray.SOPInstanceUID) not in referenced
