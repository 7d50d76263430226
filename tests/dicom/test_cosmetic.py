"""Header values the node only copies never fail a job (a real legacy head CT wrote its times as
'10:52:34.530000')."""
import subprocess
import sys
import warnings

import pydicom
import pytest

from ichnode.dicom.cosmetic import repair_cosmetic_values
from ichnode.synth import SynthSpec, write_series


@pytest.mark.parametrize("keyword, value, expected", [
    ("StudyTime", "10:52:34.530000", "105234.530000"),
    ("SeriesTime", "105234.123456789", "105234.123456"),
    ("StudyDate", "1995/03/12", "19950312"),
    ("ContentTime", "half past ten", None),
    ("PatientSex", "male", "M"),
    ("PatientSex", "X", None),
])
def test_a_non_conformant_value_is_rewritten_or_removed(keyword, value, expected):
    ds = pydicom.Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on the bad value it is given
        setattr(ds, keyword, value)
    assert repair_cosmetic_values(ds) == [keyword]
    assert ds.get(keyword) == expected


def test_conformant_values_are_left_alone():
    ds = pydicom.Dataset()
    ds.StudyTime, ds.StudyDate, ds.PatientSex = "105234.53", "19950312", "F"
    assert repair_cosmetic_values(ds) == []
    assert (ds.StudyTime, ds.StudyDate, ds.PatientSex) == ("105234.53", "19950312", "F")


def test_a_series_with_legacy_times_is_analysed(tmp_path):
    series = tmp_path / "series"
    write_series(series, SynthSpec(subtype="iph", volume_ml=10, thickness_mm=5, matrix=128, seed=3))
    for path in series.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.StudyTime = ds.SeriesTime = ds.ContentTime = "10:52:34.530000"
        ds.save_as(path)
    result = subprocess.run([sys.executable, "-m", "ichnode.cli", "process", str(series),
                             "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name.split("_")[0] for p in (tmp_path / "out").rglob("*.dcm"))
    assert "SEG" in written and "SR" in written, result.stdout
    sr = pydicom.dcmread(next((tmp_path / "out").rglob("SR_*.dcm")))
    assert sr.StudyTime == "105234.530000"
