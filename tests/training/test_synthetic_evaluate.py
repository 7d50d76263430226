"""Summary and report of the synthetic evaluation (ichnode.training.evaluate_synthetic) on made-up rows."""
from __future__ import annotations

import json

import pytest

from ichnode.training.evaluate_synthetic import GROUPS, eval_specs, performance_lines, summarize, write_report


def _rows() -> list[dict]:
    rows = []
    for g, group in enumerate(GROUPS):
        for k in range(3):
            truth = 10.0 + 5 * k + g
            rows.append({"group": group, "seed": 100 * g + k, "subtype": group.split()[0].lower(),
                         "thickness_mm": 5.0, "matrix": 64, "truth_ml": truth, "dense_unet_ml": truth + 1.0,
                         "resnet3d_ml": truth * 1.1, "classical_ml": truth - 2.0, "abc2_ml": truth * 0.8,
                         "dense_unet_dice": 0.8, "classical_dice": 0.7, "dense_unet_class": "IPH",
                         "true_class": group.split()[0]})
    rows.append({**rows[0], "group": "none", "truth_ml": 0.0, "dense_unet_ml": 0.5, "resnet3d_ml": 1.0,
                 "classical_ml": 0.0, "abc2_ml": 0.0, "true_class": None, "dense_unet_class": None})
    return rows


def test_summarize_numbers() -> None:
    s = summarize(_rows())
    assert s["volume"]["dense_unet"]["all"]["mae"] == pytest.approx(1.0)
    assert s["volume"]["dense_unet"]["all"]["n"] == 3 * len(GROUPS)
    assert s["volume"]["classical"]["SDH"]["bland_altman"]["bias"] == pytest.approx(-2.0)
    assert s["volume"]["abc2"]["all"]["mape"] == pytest.approx(20.0)
    assert s["dice"]["dense_unet"]["all"]["mean"] == pytest.approx(0.8)
    assert s["none_ml"]["resnet3d"] == pytest.approx(1.0)
    assert s["subtype_agreement"]["IPH regular"] == 1.0 and s["subtype_agreement"]["SDH"] == 0.0


def test_report_files(tmp_path) -> None:
    result = {"rows": _rows(),
              "classifier_slices": {n: {"auc": 0.5, "sensitivity": 1.0, "specificity": 0.0}
                                    for n in ("resnet50_cls", "vgg_wso", "dtvit")}
              | {"_slices": {"n": 10, "with_blood": 4}},
              "setup": {"per_group": 3, "n_none": 1, "seed": 0, "matrix": 64, "seed_start": 900000, "seconds": 1.0,
                        "weights": {"dense_unet": "a" * 64, "resnet3d_multitask": "b" * 64}}}
    summary = write_report(result, tmp_path, "cmd")
    report = (tmp_path / "report.md").read_text()
    assert "not for clinical use" in report and "ABC/2" in report and "Dice" in report
    for m in ("dense_unet", "resnet3d", "classical", "abc2"):
        assert (tmp_path / f"bland_altman_{m}.png").stat().st_size > 1000
    assert json.loads((tmp_path / "metrics.json").read_text())["summary"]["volume"]["abc2"]["all"]["n"] == 18
    assert (tmp_path / "per_phantom.csv").read_text().count("\n") == len(_rows()) + 1
    assert any("Dice" in line for line in performance_lines(summary, "dense_unet"))


def test_eval_specs_groups_and_seeds() -> None:
    specs = eval_specs(per_group=2, n_none=1)
    assert [g for g, _ in specs].count("IPH irregular") == 2 and specs[-1][0] == "none"
    assert all(s.seed >= 900_000 for _, s in specs)
    assert {s.shape for g, s in specs if g == "IPH irregular"} == {"irregular"}
