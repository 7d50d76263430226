"""Result writers: one module per IOD (seg, sr, sc), all built on highdicom.

Every object shares the source study and patient, lives in its own new series, names the notice
"not for diagnostic use" and gets deterministic UIDs (ichnode.ids), so re-runs replace.
"""
from __future__ import annotations

import warnings

from pydicom import Dataset

from ichnode.config import ResultsConfig
from ichnode.domain import Analysis
from ichnode.results.sc import build_sc
from ichnode.results.seg import build_seg
from ichnode.results.sr import build_sr

__all__ = ["build_results", "build_seg", "build_sr", "build_sc"]


def build_results(analysis: Analysis, *, software_version: str,
                  config: ResultsConfig = ResultsConfig()) -> list[Dataset]:
    """[SEG (if any), SR, SC key images...] for one analysed or not-analysed series; series numbers
    and the number of key images from the `results:` config.

    The SR comes before the key images and after the SEG it references, so a receiver that stores
    in order never holds a report pointing at a missing segmentation.
    """
    with warnings.catch_warnings():
        # highdicom warns about unusual person names *with the name in the message*: patient
        # names must never reach a log, and the name is copied from the source as it is.
        warnings.filterwarnings("ignore", message=".*person name.*")
        seg = build_seg(analysis, software_version=software_version,
                        series_number=config.seg_series_number)
        sr = build_sr(analysis, seg, software_version=software_version,
                      series_number=config.sr_series_number)
        scs = build_sc(analysis, n_key_slices=config.key_slices, software_version=software_version,
                       series_number=config.sc_series_number)
    results = ([seg] if seg is not None else []) + [sr] + scs
    for ds in results:
        _carry_deidentification(ds, analysis.datasets[0] if analysis.datasets else Dataset())
    return results


def _carry_deidentification(result: Dataset, source: Dataset) -> None:
    """A de-identified source makes a de-identified result, which must say how (type 1C)."""
    if str(source.get("PatientIdentityRemoved", "")).upper() != "YES":
        return
    result.PatientIdentityRemoved = "YES"
    if "DeidentificationMethod" in source or "DeidentificationMethodCodeSequence" in source:
        for keyword in ("DeidentificationMethod", "DeidentificationMethodCodeSequence"):
            if keyword in source:
                setattr(result, keyword, source[keyword].value)
    else:
        result.DeidentificationMethod = "Source de-identified; method not stated by the source"
