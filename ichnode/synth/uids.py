"""Deterministic UIDs of synthetic series: the same spec always gives the same study, series and
image UIDs (a rewritten phantom replaces, it does not duplicate)."""
from __future__ import annotations

from dataclasses import asdict

from pydicom.uid import generate_uid


def synth_uid(*parts) -> str:
    """Deterministic UID (pydicom root + hash of the parts)."""
    return generate_uid(entropy_srcs=["ichnode-synth", *(str(p) for p in parts)])


def series_uids(spec) -> tuple[str, str]:
    """(study, series) UIDs of a SynthSpec: the study from seed and patient, the series from the
    whole spec."""
    study = spec.study_uid or synth_uid("study", spec.seed, spec.patient_id)
    fields = {k: v for k, v in asdict(spec).items() if k not in ("study_uid", "series_uid")}
    return study, spec.series_uid or synth_uid("series", study, sorted(fields.items()))
