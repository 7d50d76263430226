"""`ichnode validate` on small synthetic studies (5 mm, matrix 128) and, when present, real CQ500."""
import contextlib
import csv
import io
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest

from ichnode.synth import SynthSpec, write_series

from tests.helpers import SHARED_DATA


def main(argv: list[str]) -> int:
    """`ichnode ARGV` in its own process, as a user runs it (in this process the CLI would bind the
    logging to pytest's capture streams, which later tests find closed); its output is echoed."""
    result = subprocess.run([sys.executable, "-m", "ichnode.cli", *argv], capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


def nifti_mask(series_dir, path):
    """The phantom's truth mask as NIfTI (x, y, z) with the series' RAS affine."""
    mask = np.load(series_dir / "truth_mask.npz")["mask"]  # (z, y, x)
    files = sorted(series_dir.glob("CT*.dcm"))
    first, last = (pydicom.dcmread(f, stop_before_pixels=True) for f in (files[0], files[-1]))
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    dy, dx = (float(v) for v in first.PixelSpacing)
    p0 = np.array([float(v) for v in first.ImagePositionPatient])
    step = (np.array([float(v) for v in last.ImagePositionPatient]) - p0) / (len(files) - 1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = iop[:3] * dx, iop[3:] * dy, step, p0
    nib.save(nib.Nifti1Image(mask.transpose(2, 1, 0).astype(np.uint8), np.diag([-1, -1, 1, 1]) @ lps),
             str(path))
    return mask


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    inp, masks = root / "in", root / "masks"
    masks.mkdir()
    iph = write_series(inp / "iph", SynthSpec(subtype="iph", matrix=128, volume_ml=20, seed=1))
    # a second, normal series in the IPH study: the worst series (the IPH one) must be chosen
    write_series(inp / "iph-b", SynthSpec(subtype="none", matrix=128, seed=1, study_uid=iph["study_uid"],
                                          series_uid="1.2.826.0.1.3680043.8.498.77"))
    none = write_series(inp / "none", SynthSpec(subtype="none", matrix=128, seed=2))
    nolabel = write_series(inp / "nolabel", SynthSpec(subtype="sdh", matrix=128, volume_ml=15, seed=3))
    mr = write_series(inp / "mr", SynthSpec(subtype="iph", matrix=128, seed=4, modality="MR"))
    (inp / "broken.dcm").write_bytes(b"DICM but not really")
    # every phantom has the same grid: the file name tells which study the mask is for
    nifti_mask(inp / "iph", masks / f"{iph['study_uid']}_truth.nii.gz")
    nifti_mask(inp / "none", masks / "ambiguous.nii.gz")
    labels = root / "labels.csv"
    labels.write_text("study_uid,any,iph,sdh\n"
                      f"{iph['study_uid']},1,1,0\n{none['study_uid']},0,0,0\n{mr['study_uid']},1,1,0\n"
                      "1.2.3.999,1,,\n")
    out = root / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["validate", str(inp), "--labels", str(labels), "-o", str(out), "--masks", str(masks)])
    (out / "terminal.txt").write_text(printed.getvalue())
    return rc, out, {"iph": iph, "none": none, "nolabel": nolabel, "mr": mr}


def test_exit_code_and_outputs(validated):
    rc, out, _ = validated
    assert rc == 0
    printed = (out / "terminal.txt").read_text()
    assert "sensitivity (95% CI)" in printed and "not reported by the engine" in printed
    assert "2 evaluated, 1 not analysed, 0 failed, 1 unlabelled" in printed
    assert "labels with no study: 1.2.3.999" in printed and "unreadable file broken.dcm" in printed
    assert {"report.md", "studies.csv", "summary.json", "roc_any.png"} <= {p.name for p in out.iterdir()}


def test_per_study_table(validated):
    _, out, truth = validated
    rows = {r["key"]: r for r in csv.DictReader((out / "studies.csv").open())}
    iph, none, mr = (rows[truth[k]["study_uid"]] for k in ("iph", "none", "mr"))
    assert iph["outcome"] == "analysed" and iph["positive_any"] == "1" and iph["label_any"] == "1"
    assert iph["series"] == "2" and "worst of 2 eligible series" in iph["reason"]
    assert iph["priority"] in ("high", "critical") and float(iph["volume_ml_total"]) > 10
    assert iph["positive_IPH"] == "not reported"  # the classical engine tells no subtype apart
    assert abs(float(iph["volume_error_ml"])) < 5 and iph["mask"].endswith("_truth.nii.gz")
    assert none["outcome"] == "analysed" and none["positive_any"] == "0" and none["priority"] == "routine"
    assert mr["outcome"] == "not analysed" and "modality MR" in mr["reason"]
    (unlabelled,) = [r for k, r in rows.items() if r["outcome"] == "unlabelled"]
    assert unlabelled["key"].startswith("study-") and truth["nolabel"]["study_uid"] not in rows


def test_no_patient_identifiers(validated):
    _, out, _ = validated
    for f in out.iterdir():
        if f.suffix in (".md", ".csv", ".json", ".txt"):
            text = f.read_text()
            assert "SYNTH^PHANTOM" not in text and "SYNTH0001" not in text, f.name


def test_summary_counts_and_metrics(validated):
    _, out, _ = validated
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"files": 5 * 30 + 1, "unreadable_files": 1, "series": 5,
                                 "studies_in_folder": 4, "evaluated": 2, "not_analysed": 1,
                                 "failed": 0, "unlabelled": 1, "labels_without_study": 1}
    assert summary["labels_without_study"] == ["1.2.3.999"]
    assert summary["unreadable_files"][0]["path"] == "broken.dcm"
    (skipped,) = summary["masks_skipped"]
    assert skipped["path"] == "ambiguous.nii.gz" and "matches several series" in skipped["reason"]
    assert summary["volume_error"]["n"] == 1
    rows = {r["row"]: r for r in summary["rows"]}
    assert rows["any"]["tp"] == 1 and rows["any"]["tn"] == 1 and rows["any"]["auc"]["auc"] == 1.0
    assert rows["any"]["auc"]["ci_low"] is None  # DeLong needs 2 + 2
    assert rows["IPH"]["reported"] is False
    report = (out / "report.md").read_text()
    assert "not reported by the engine" in report and "Wilson" in report


def test_label_file_in_no_format_exits_2(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["validate", str(tmp_path / "in"), "--labels", str(bad), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "not a known label format" in err and "\n" not in err


CQ500 = SHARED_DATA / "cq500-ct0"
READS = SHARED_DATA / "cq500-reads.csv"


@pytest.mark.slow
def test_real_cq500_folder(tmp_path, capsys):
    """One real study (CQ500-CT-0, negative by 2 of 3 readers) and a stray slice of CQ500-CT-1."""
    if not (CQ500.is_dir() and READS.is_file()):
        pytest.skip(f"real data absent: {CQ500} / {READS} (see ../shared/data/README.md)")
    # The series is contrast-enhanced (see the data README): a node that rejects contrast series
    # leaves it "not analysed"; analyse it anyway to have one evaluated study.
    config = tmp_path / "config.yaml"
    config.write_text("eligibility:\n  reject_contrast: false\n")
    rc = main(["validate", "-c", str(config), str(CQ500), "--labels", str(READS), "-o", str(tmp_path)])
    printed = capsys.readouterr().out
    assert rc == 0
    rows = {r["key"]: r for r in csv.DictReader((tmp_path / "studies.csv").open())}
    assert rows["CQ500-CT-0"]["outcome"] == "analysed" and rows["CQ500-CT-0"]["label_any"] == "0"
    assert rows["CQ500-CT-1"]["outcome"] == "not analysed" and rows["CQ500-CT-1"]["label_any"] == "1"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"]["evaluated"] == 1 and summary["counts"]["not_analysed"] == 1
    assert summary["counts"]["labels_without_study"] == 489
    any_row = next(r for r in summary["rows"] if r["row"] == "any")
    assert any_row["auc"]["auc"] is None and "no positive study" in any_row["auc"]["undefined_reason"]
    assert "nan" not in printed.lower()
    # (CQ500's PatientName is the case name itself, the key the user brought: no identifier check here;
    # the synthetic run checks that names and IDs read from DICOM are never written.)
