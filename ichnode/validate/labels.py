"""Label files for `ichnode validate`, auto-detected from the header row.

Three formats (comma-separated, header row required, UTF-8 with or without BOM):

* CQ500 reads: ``name,Category,R1:ICH,R1:IPH,R1:IVH,R1:SDH,R1:EDH,R1:SAH,...,R2:...,R3:...``; ``name``
  is the PatientID (e.g. CQ500-CT-0). A study is positive for a subtype when a strict majority of
  the readers who gave a value say 1 (2 of 3); a tie (e.g. 1 of 2 when a value is blank) counts as
  negative. ``R*:ICH`` is the "any" label.
* RSNA 2019 (slice level): ``ID,Label`` with ``ID_<id>_<subtype>``, subtype any | epidural |
  intraparenchymal | intraventricular | subarachnoid | subdural. ``<id>`` is matched against the
  SOP Instance UID of each slice, with or without the ``ID_`` prefix (RSNA's own DICOM files carry
  ``ID_<hex>`` as SOP Instance UID). A study is positive for a subtype when any of its slices is.
* Plain: ``study_uid,any[,iph,ivh,sah,sdh,edh]`` (any column order, case-insensitive); matched by
  Study Instance UID. A blank subtype cell means "not labelled" (the study is left out of that row).

Values must be 0 or 1. Every error names the file and, where it applies, the row (1 = header).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

ROWS = ("any", "IPH", "IVH", "SAH", "SDH", "EDH")  # the label classes of every format
COMBINED = "SDH or EDH"  # derived row: positive when SDH or EDH is
RSNA_SUBTYPES = {"any": "any", "epidural": "EDH", "intraparenchymal": "IPH",
                 "intraventricular": "IVH", "subarachnoid": "SAH", "subdural": "SDH"}
CQ500_COLUMNS = {"ICH": "any", "IPH": "IPH", "IVH": "IVH", "SAH": "SAH", "SDH": "SDH", "EDH": "EDH"}
_READER = re.compile(r"^R(\d+):(ICH|IPH|IVH|SAH|SDH|EDH)$")

Label = dict[str, "bool | None"]  # row -> positive, or None when not labelled


class LabelError(ValueError):
    """A label file that cannot be used; the message is one line naming the file (and row)."""


@dataclass
class LabelSet:
    path: Path
    format: str  # "cq500" | "rsna" | "plain"
    match_by: str  # "PatientID" | "SOPInstanceUID" | "StudyInstanceUID"
    labels: dict[str, Label] = field(default_factory=dict)  # key -> label (RSNA: key = slice id)
    readers: int = 0  # CQ500: number of readers found

    def describe(self) -> str:
        what = {"cq500": f"CQ500 reads, majority of {self.readers} readers",
                "rsna": "RSNA 2019 slice labels, study positive when any slice is",
                "plain": "plain study_uid,any[,iph,...]"}[self.format]
        unit = "slices" if self.format == "rsna" else "studies"
        return f"{what}; {len(self.labels)} labelled {unit}, matched by {self.match_by}"


def read_labels(path: Path | str) -> LabelSet:
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise LabelError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"{path}: not a CSV text file ({exc})") from exc
    if not rows:
        raise LabelError(f"{path}: empty file, expected a header row")
    header = [h.strip() for h in rows[0]]
    body = [(i, r) for i, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)]
    lowered = [h.lower() for h in header]
    if "name" in lowered and any(_READER.match(h) for h in header):
        return _cq500(path, header, body)
    if lowered[:2] == ["id", "label"]:
        return _rsna(path, body)
    if lowered and lowered[0] == "study_uid" and "any" in lowered:
        return _plain(path, lowered, body)
    raise LabelError(
        f"{path}: not a known label format: expected a CQ500 reads header (name,Category,R1:ICH,...), "
        f"RSNA 'ID,Label' or 'study_uid,any[,iph,ivh,sah,sdh,edh]'; header is {','.join(header)[:120]!r}")


def _value(path: Path, row: int, column: str, text: str, blank_ok: bool) -> bool | None:
    text = text.strip()
    if text == "" and blank_ok:
        return None
    if text in ("0", "1", "0.0", "1.0"):
        return text.startswith("1")
    raise LabelError(f"{path}, row {row}: {column} must be 0 or 1, got {text!r}")


def _cq500(path: Path, header: list[str], body) -> LabelSet:
    name_col = [h.lower() for h in header].index("name")
    columns: dict[str, list[int]] = {row: [] for row in ROWS}  # row -> column indices, one per reader
    readers = set()
    for i, h in enumerate(header):
        m = _READER.match(h)
        if m:
            columns[CQ500_COLUMNS[m.group(2)]].append(i)
            readers.add(m.group(1))
    out = LabelSet(path, "cq500", "PatientID", readers=len(readers))
    for n, r in body:
        if len(r) != len(header):
            raise LabelError(f"{path}, row {n}: {len(r)} fields, the header has {len(header)}")
        name = r[name_col].strip()
        if not name:
            raise LabelError(f"{path}, row {n}: empty name")
        if name in out.labels:
            raise LabelError(f"{path}, row {n}: {name} is listed twice")
        label: Label = {}
        for row, idx in columns.items():
            votes = [_value(path, n, header[i], r[i], blank_ok=True) for i in idx]
            votes = [v for v in votes if v is not None]
            label[row] = (2 * sum(votes) > len(votes)) if votes else None
        out.labels[name] = label
    return out


def _rsna(path: Path, body) -> LabelSet:
    out = LabelSet(path, "rsna", "SOPInstanceUID")
    for n, r in body:
        if len(r) < 2:
            raise LabelError(f"{path}, row {n}: expected ID,Label")
        ident, _, subtype = r[0].strip().rpartition("_")
        if not ident.startswith("ID_") or len(ident) <= 3 or subtype not in RSNA_SUBTYPES:
            raise LabelError(f"{path}, row {n}: ID must be ID_<id>_<subtype> with subtype one of "
                             f"{', '.join(RSNA_SUBTYPES)}, got {r[0].strip()[:80]!r}")
        value = _value(path, n, "Label", r[1], blank_ok=False)
        row = RSNA_SUBTYPES[subtype]
        label = out.labels.setdefault(ident[3:], {})
        label[row] = bool(label.get(row)) or value  # a duplicate row can only add a positive
    return out


def _plain(path: Path, lowered: list[str], body) -> LabelSet:
    known = {"study_uid": None, **{row.lower(): row for row in ROWS}}
    unknown = [h for h in lowered if h not in known]
    if unknown:
        raise LabelError(f"{path}, row 1: unknown column(s) {', '.join(unknown)}; expected "
                         "study_uid,any[,iph,ivh,sah,sdh,edh]")
    out = LabelSet(path, "plain", "StudyInstanceUID")
    for n, r in body:
        if len(r) != len(lowered):
            raise LabelError(f"{path}, row {n}: {len(r)} fields, the header has {len(lowered)}")
        uid = r[0].strip()
        if not uid:
            raise LabelError(f"{path}, row {n}: empty study_uid")
        if uid in out.labels:
            raise LabelError(f"{path}, row {n}: study_uid listed twice")
        label: Label = {row: None for row in ROWS}
        for h, text in zip(lowered[1:], r[1:]):
            label[known[h]] = _value(path, n, h, text, blank_ok=h != "any")
        out.labels[uid] = label
    return out


def combined(label: Label) -> bool | None:
    """The "SDH or EDH" label: positive if either is, negative if both are, else unknown."""
    sdh, edh = label.get("SDH"), label.get("EDH")
    if sdh or edh:
        return True
    if sdh is False and edh is False:
        return False
    return None


def merge_slices(labels: list[Label]) -> Label:
    """Study label from slice labels (RSNA): positive if any slice is, None if no slice says."""
    out: Label = {}
    for row in ROWS:
        values = [lab[row] for lab in labels if lab.get(row) is not None]
        out[row] = any(values) if values else None
    return out
