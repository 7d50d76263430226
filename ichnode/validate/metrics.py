"""Per-row diagnostic accuracy over the analysed, labelled studies.

Point estimates come from ichnode.training.metrics (confusion, roc_curve); the intervals from
ichnode.validate.stats (Wilson for sensitivity and specificity, DeLong for the AUC).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ichnode.config import TriageConfig
from ichnode.training.metrics import confusion, roc_curve
from ichnode.validate.labels import COMBINED, combined
from ichnode.validate.predict import REPORT_ROWS, RowPrediction, predict
from ichnode.validate.stats import AucEstimate, delong_auc, wilson_interval
from ichnode.validate.studies import Study


def study_label(study: Study, row: str) -> bool | None:
    if study.label is None:
        return None
    return combined(study.label) if row == COMBINED else study.label.get(row)


def study_prediction(study: Study, row: str, triage: TriageConfig) -> RowPrediction | None:
    s = study.chosen
    if s is None:
        return None
    return predict(row, s.segment_classes, s.volumes, s.probabilities, triage)


@dataclass
class RowMetrics:
    row: str
    reported: bool  # False: no analysed study has a prediction for this row
    n: int = 0
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    unlabelled: int = 0  # analysed studies with a blank label for this row
    sensitivity: float | None = None
    sensitivity_ci: tuple[float, float] | None = None
    specificity: float | None = None
    specificity_ci: tuple[float, float] | None = None
    auc: AucEstimate | None = None
    score: str = ""  # "probability" | "volume (mL)" | "mixed"
    roc: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        ci = lambda c: None if c is None else [c[0], c[1]]  # noqa: E731
        return {"row": self.row, "reported": self.reported, "n": self.n, "tp": self.tp, "fp": self.fp,
                "tn": self.tn, "fn": self.fn, "label_blank": self.unlabelled,
                "sensitivity": self.sensitivity, "sensitivity_ci95": ci(self.sensitivity_ci),
                "specificity": self.specificity, "specificity_ci95": ci(self.specificity_ci),
                "auc": self.auc.as_dict() if self.auc else None, "roc_score": self.score or None}


def row_metrics(studies: list[Study], row: str, triage: TriageConfig) -> RowMetrics:
    truth, called, scores, kinds = [], [], [], set()
    blank = 0
    any_prediction = False
    for study in studies:
        if study.outcome != "analysed":
            continue
        pred = study_prediction(study, row, triage)
        if pred is None:
            continue
        any_prediction = True
        label = study_label(study, row)
        if label is None:
            blank += 1
            continue
        truth.append(label)
        called.append(pred.positive)
        scores.append(pred.score)
        kinds.add("probability" if pred.probability is not None else "volume (mL)")
    m = RowMetrics(row, any_prediction, unlabelled=blank)
    if not truth:
        return m
    c = confusion(np.array(truth), np.array(called))
    m.n, m.tp, m.fp, m.tn, m.fn = c.n, c.tp, c.fp, c.tn, c.fn
    if c.tp + c.fn:
        m.sensitivity, m.sensitivity_ci = c.tp / (c.tp + c.fn), wilson_interval(c.tp, c.tp + c.fn)
    if c.tn + c.fp:
        m.specificity, m.specificity_ci = c.tn / (c.tn + c.fp), wilson_interval(c.tn, c.tn + c.fp)
    m.auc = delong_auc(np.array(truth), np.array(scores))
    m.score = kinds.pop() if len(kinds) == 1 else "mixed"
    if m.auc.auc is not None:
        fpr, tpr, _ = roc_curve(np.array(truth), np.array(scores))
        m.roc = (fpr, tpr)
    return m


def all_rows(studies: list[Study], triage: TriageConfig) -> list[RowMetrics]:
    return [row_metrics(studies, row, triage) for row in REPORT_ROWS]
