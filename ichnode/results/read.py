"""Reading back what the writers produced (demo table, tests): tolerant, never raises on content."""
from __future__ import annotations

import pydicom


def sr_numbers(ds: pydicom.Dataset) -> dict[str, list[float]]:
    """All NUM content items of an SR: concept name meaning -> values, in document order."""
    found: dict[str, list[float]] = {}

    def walk(items) -> None:
        for item in items or []:
            if item.get("ValueType") == "NUM" and "MeasuredValueSequence" in item:
                name = item.ConceptNameCodeSequence[0].CodeMeaning
                value = float(item.MeasuredValueSequence[0].NumericValue)
                found.setdefault(str(name), []).append(value)
            walk(item.get("ContentSequence"))

    walk(ds.get("ContentSequence"))
    return found


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
