"""Reading back what the writers produced (demo table, tests): tolerant, never raises on content."""
from __future__ import annotations

from dataclasses import dataclass

import pydicom


@dataclass(frozen=True)
class SrNumber:
    group: str  # the measurement group's tracking identifier, e.g. "All hemorrhage"
    name: str  # concept name meaning, e.g. "Volume"
    value: float
    method: str  # measurement method meaning, "" when absent


def _meaning(item, sequence: str) -> str:
    seq = item.get(sequence)
    return str(seq[0].CodeMeaning) if seq else ""


def sr_measurements(ds: pydicom.Dataset) -> list[SrNumber]:
    """All NUM content items of an SR with the group they belong to, in document order."""
    found: list[SrNumber] = []

    def walk(items, group: str) -> None:
        items = items or []
        for item in items:
            if item.get("ValueType") == "TEXT" and _meaning(
                    item, "ConceptNameCodeSequence") == "Tracking Identifier":
                group = str(item.TextValue)
        for item in items:
            if item.get("ValueType") == "NUM" and "MeasuredValueSequence" in item:
                method = next((_meaning(c, "ConceptCodeSequence") for c in item.get("ContentSequence", [])
                               if _meaning(c, "ConceptNameCodeSequence") == "Measurement Method"), "")
                found.append(SrNumber(group, _meaning(item, "ConceptNameCodeSequence"),
                                      float(item.MeasuredValueSequence[0].NumericValue), method))
            else:
                walk(item.get("ContentSequence"), group)

    walk(ds.get("ContentSequence"), "")
    return found


def sr_value(ds: pydicom.Dataset, group: str, name: str, method_contains: str = "") -> float | None:
    """The first measurement of a group with this name (and method), or None."""
    for m in sr_measurements(ds):
        if m.group == group and m.name == name and method_contains.lower() in m.method.lower():
            return m.value
    return None


def sr_texts(ds: pydicom.Dataset) -> list[str]:
    """All TEXT values and CODE meanings of an SR, in document order."""
    texts: list[str] = []

    def walk(items) -> None:
        for item in items or []:
            if item.get("ValueType") == "TEXT":
                texts.append(str(item.TextValue))
            elif item.get("ValueType") == "CODE" and "ConceptCodeSequence" in item:
                texts.append(str(item.ConceptCodeSequence[0].CodeMeaning))
            walk(item.get("ContentSequence"))

    walk(ds.get("ContentSequence"))
    return texts
