"""Deterministic identifiers for result objects, and short digests for logs.

Result UIDs are derived from the inputs instead of being random, so that re-running the same model
version on the same series yields the same SOP Instance UIDs: a PACS then replaces the earlier
objects instead of accumulating duplicates.
"""
from __future__ import annotations

import hashlib

from pydicom.uid import UID

# "2.25." is the ISO/ITU arc for UUID-derived UIDs (DICOM PS3.5 B.2): the remainder is a decimal
# integer of at most 128 bits, which keeps the UID within 44 characters (limit: 64).
_ROOT = "2.25."
_SEP = "\x1f"  # unit separator: cannot occur in UIDs or version strings, so joins are unambiguous


def result_uid(source_series_uid: str, model_version: str, kind: str, index: int = 0) -> UID:
    """UID for a result object (or series) derived from its inputs.

    kind names the object ("seg", "sr-series", ...); index tells apart several objects of one kind
    (e.g. one secondary capture per key slice).
    """
    text = _SEP.join((str(source_series_uid), str(model_version), str(kind), str(int(index))))
    value = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "big")
    uid = UID(f"{_ROOT}{value}")
    assert len(uid) <= 64 and uid.is_valid
    return uid


def digest(text: str, length: int = 12) -> str:
    """Short hex digest of text, for logging identifiers (patient ID, UIDs) without exposing them."""
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest()[:length]


def source_key(datasets) -> str:
    """What result UIDs derive from: the source series plus a digest of its exact instances.

    Re-running the same instances gives the same UIDs (the PACS replaces, never duplicates); a
    late instance changes the set, so the superseding results get new UIDs.
    """
    sop_uids = sorted(str(ds.SOPInstanceUID) for ds in datasets)
    series = str(datasets[0].SeriesInstanceUID) if datasets else ""
    return f"{series}/{digest(chr(31).join(sop_uids), 32)}"
