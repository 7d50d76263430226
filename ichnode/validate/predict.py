"""What the engines say about one series, per report row (any, IPH, ..., "SDH or EDH").

Definitions (also printed in the report header):
* positive for a row when the engine's segmented volume of the row's classes >= triage.flag_volume_ml
  (and > 0) or its probability >= triage.flag_probability (the node's flag rule,
  ichnode.triage.priority.flagged_classes);
* the ROC score is the probability where the engines give one for the row, else the volume in mL;
* "any": all hemorrhage classes (volume summed; probability "any", else the highest class probability);
* a subtype row needs a class of that name: an engine with the undifferentiated class "ICH" (the
  classical engine) answers "any" only, and its subtype rows are "not reported by the engine";
* "SDH or EDH": SDH, EDH and any extra-axial class (a class name containing "EXTRA", or "EAH"),
  e.g. BLAST-CT's extra-axial hemorrhage; an extra-axial class counts toward no other subtype row;
* any other unknown class (e.g. oedema) is no hemorrhage: left out of every row and listed.
"""
from __future__ import annotations

from dataclasses import dataclass

from ichnode.config import TriageConfig
from ichnode.domain import ALL_CLASSES, SUBTYPES
from ichnode.validate.labels import COMBINED

REPORT_ROWS = ("any",) + SUBTYPES + (COMBINED,)


def is_extra_axial(name: str) -> bool:
    upper = name.upper()
    return "EXTRA" in upper or upper in ("EAH", "EA")


def is_hemorrhage(name: str) -> bool:
    return name in ALL_CLASSES or is_extra_axial(name)


def row_classes(row: str, classes) -> set[str]:
    """The engine classes (from `classes`) that a report row counts."""
    classes = set(classes)
    if row == "any":
        return {c for c in classes if is_hemorrhage(c)}
    if row == COMBINED:
        return {c for c in classes if c in ("SDH", "EDH") or is_extra_axial(c)}
    return {row} & classes


@dataclass(frozen=True)
class RowPrediction:
    volume_ml: float | None  # None: the engines segment no class of this row
    probability: float | None  # None: the engines give no probability for this row
    positive: bool
    score: float  # probability if given, else volume


def predict(row: str, segment_classes, volumes: dict[str, float], probabilities: dict[str, float],
            triage: TriageConfig) -> RowPrediction | None:
    """The row's prediction, or None when the engines do not report this row."""
    seg = row_classes(row, segment_classes)
    volume = sum(volumes.get(c, 0.0) for c in seg) if seg else None
    probs = [probabilities[c] for c in row_classes(row, probabilities)]
    if row == "any" and "any" in probabilities:
        probability = probabilities["any"]
    else:
        probability = max(probs) if probs else None
    if volume is None and probability is None:
        return None
    positive = ((volume is not None and volume >= max(triage.flag_volume_ml, 1e-9))
                or (probability is not None and probability >= triage.flag_probability))
    return RowPrediction(volume, probability, positive, probability if probability is not None else volume)


def ignored_classes(segment_classes, probabilities) -> list[str]:
    return sorted({c for c in (*segment_classes, *probabilities) if c != "any" and not is_hemorrhage(c)})
