"""Header values the node only copies (dates, times, patient sex) made safe to copy.

Legacy and non-conformant senders write times as '10:52:34.530000' and dates as '1995.03.12'
(ACR-NEMA style). The node never computes with them, but highdicom re-parses them when the result
objects copy the study's attributes, and a parse error would fail the whole job. Each such value is
rewritten to its standard form when one is plain to see, and removed otherwise: a result without a
study time is better than no result.
"""
from __future__ import annotations

import re

import pydicom
from pydicom.valuerep import DA, DT, TM

_TM = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(\.\d{1,6})?\d*)?)?$")
_DA = re.compile(r"^(\d{4})[.\-/]?(\d{2})[.\-/]?(\d{2})$")
_SEX = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "O": "O", "OTHER": "O"}
_PARSERS = {"DA": DA, "TM": TM, "DT": DT}


def _standard_form(vr: str, text: str) -> str | None:
    text = text.strip()
    if vr == "TM" and (m := _TM.match(text)):
        return "".join(g for g in m.groups() if g)
    if vr == "DA" and (m := _DA.match(text)):
        return "".join(m.groups())
    return text if vr == "DT" else None


def _parses(vr: str, text: str) -> bool:
    try:
        _PARSERS[vr](text)
    except ValueError:
        return False
    return True


def repair_cosmetic_values(ds: pydicom.Dataset) -> list[str]:
    """Rewrite or remove the top-level DA/TM/DT values and PatientSex that would not parse; returns
    the keywords it changed (for a log line without their values)."""
    changed = []
    for elem in list(ds):
        if elem.VR not in _PARSERS or elem.VM != 1 or elem.value in (None, ""):
            continue
        text = str(elem.value)
        if _parses(elem.VR, text):
            continue
        fixed = _standard_form(elem.VR, text)
        if fixed is not None and _parses(elem.VR, fixed):
            elem.value = fixed
        else:
            del ds[elem.tag]
        changed.append(elem.keyword or str(elem.tag))
    sex = str(ds.get("PatientSex", "") or "").strip().upper()
    if sex and sex not in _SEX.values():
        if sex in _SEX:
            ds.PatientSex = _SEX[sex]
        else:
            del ds.PatientSex
        changed.append("PatientSex")
    return changed
