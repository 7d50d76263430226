"""A folder of DICOM files -> analysed series -> studies matched to their labels.

Series are found and analysed as `ichnode process` does (ichnode.offline.group_series, then
ichnode.pipeline.analyse_headers); only a small summary of each is kept (no pixels). Patient
identifiers are used for matching in memory and never printed: a study is shown by its label
file's key, or, without a label, by "study-" + the first 12 hex digits of SHA-256(StudyInstanceUID).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ichnode.assemble.series import Headers, read_headers
from ichnode.config import Config
from ichnode.domain import Priority
from ichnode.ids import digest
from ichnode.infer.engine import InferenceEngine
from ichnode.offline import SIDE_FILE_SUFFIXES, group_series
from ichnode.pipeline import analyse_headers
from ichnode.triage.priority import prioritise
from ichnode.validate.labels import Label, LabelSet, merge_slices
from ichnode.validate.masks import Grid, series_grid

MASK_SUFFIXES = (".nii", ".nii.gz")  # truth masks beside the images are not images


@dataclass
class SeriesOutcome:
    study_uid: str
    series_uid: str
    patient_id: str  # matching only: never printed or written
    sop_uids: frozenset[str]
    slices: int
    outcome: str  # "analysed" | "not analysed" | "failed"
    reason: str = ""
    segment_classes: tuple[str, ...] = ()
    volumes: dict[str, float] = field(default_factory=dict)
    total_ml: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    priority: Priority = Priority.NOT_ANALYSED
    priority_reason: str = ""
    grid: Grid | None = None
    seconds: float = 0.0


@dataclass
class Study:
    key: str  # printable: the label file's key, or study-<digest> when unlabelled
    label: Label | None  # None: unlabelled
    series: list[SeriesOutcome]
    chosen: SeriesOutcome | None = None
    outcome: str = ""  # "analysed" | "not analysed" | "failed" | "unlabelled"
    reason: str = ""
    labelled_slices: int = 0  # RSNA: slices of the study found in the label file
    truth_ml: float | None = None  # from a truth mask of the chosen series
    mask: str = ""  # the truth mask's file name


def list_files(input_dir: Path) -> list[Path]:
    return sorted(p for p in Path(input_dir).rglob("*") if p.is_file()
                  and p.suffix.lower() not in SIDE_FILE_SUFFIXES
                  and not p.name.lower().endswith(MASK_SUFFIXES))


def read_folder(paths: list[Path], tick: Callable[[int], None] = lambda n: None,
                chunk: int = 64) -> Headers:
    datasets, good, bad = [], [], []
    for i in range(0, len(paths), chunk):
        h = read_headers(paths[i:i + chunk])
        datasets += h.datasets
        good += h.paths
        bad += h.unreadable
        tick(len(paths[i:i + chunk]))
    return Headers(tuple(datasets), tuple(good), tuple(bad))


def analyse_series(group: Headers, config: Config, engine: InferenceEngine) -> SeriesOutcome:
    first = group.datasets[0]
    out = SeriesOutcome(str(first.get("StudyInstanceUID", "")), str(first.get("SeriesInstanceUID", "")),
                        str(first.get("PatientID", "")),
                        frozenset(str(ds.SOPInstanceUID) for ds in group.datasets),
                        len(group.datasets), "analysed")
    start = time.perf_counter()
    try:
        analysis = analyse_headers(group, config, engine)
    except Exception as exc:  # noqa: BLE001 - one broken series must not stop the run
        out.outcome, out.reason = "failed", f"{type(exc).__name__}: {exc}"
        return out
    finally:
        out.seconds = time.perf_counter() - start
    triage = prioritise(analysis, config.triage)
    out.priority, out.priority_reason = triage.priority, triage.reason
    if analysis.not_analysed or analysis.findings is None:
        out.outcome, out.reason = "not analysed", analysis.not_analysed or "no findings"
        return out
    out.segment_classes = tuple(analysis.findings.segment_classes)
    out.probabilities = dict(analysis.findings.probabilities)
    if analysis.quantities is not None:
        out.volumes = dict(analysis.quantities.volume_ml_by_class)
        out.total_ml = analysis.quantities.total_ml
    out.grid = series_grid(analysis.volume.datasets)
    return out


def series_groups(headers: Headers) -> list[Headers]:
    return list(group_series(headers).values())


def worst(series: list[SeriesOutcome]) -> SeriesOutcome:
    """The series the node would judge worst: highest priority, then largest total volume."""
    return min(series, key=lambda s: (s.priority.rank, -s.total_ml))


def match_studies(series: list[SeriesOutcome], labels: LabelSet) -> tuple[list[Study], list[str]]:
    """Studies of the folder with their labels and chosen series; and the label keys with no study."""
    by_study: dict[str, list[SeriesOutcome]] = defaultdict(list)
    for s in series:
        by_study[s.study_uid].append(s)
    units: dict[str, Study] = {}
    used: set[str] = set()
    for study_uid, members in by_study.items():
        key, label, slice_ids = _label_for(study_uid, members, labels)
        if label is None:
            units[f"\0{study_uid}"] = Study(f"study-{digest(study_uid)}", None, members)
            continue
        used.update(slice_ids) if labels.format == "rsna" else used.add(key)
        unit = units.setdefault(key, Study(key, label, []))  # CQ500: one patient, several studies
        unit.series += members
        unit.labelled_slices += len(slice_ids)
    studies = [_decide(u) for u in units.values()]
    studies.sort(key=lambda s: (s.label is None, s.key))
    missing = sorted(k for k in labels.labels if k not in used)
    return studies, missing


def _label_for(study_uid: str, members: list[SeriesOutcome], labels: LabelSet):
    if labels.match_by == "StudyInstanceUID":
        return study_uid, labels.labels.get(study_uid), ()
    if labels.match_by == "PatientID":
        pid = next((s.patient_id for s in members if s.patient_id), "")
        return pid, labels.labels.get(pid) if pid else None, ()
    ids = sorted({k for s in members for sop in s.sop_uids
                  for k in (sop, sop[3:] if sop.startswith("ID_") else sop) if k in labels.labels})
    if not ids:
        return "", None, ()
    return f"ID_{ids[0]}", merge_slices([labels.labels[k] for k in ids]), ids


def _decide(study: Study) -> Study:
    analysed = [s for s in study.series if s.outcome == "analysed"]
    if study.label is None:
        study.outcome, study.reason = "unlabelled", "no label for this study in the label file"
        if analysed:
            study.chosen = worst(analysed)
        return study
    if analysed:
        study.chosen = worst(analysed)
        study.outcome = "analysed"
        others = len(study.series) - 1
        if others:
            study.reason = (f"worst of {len(analysed)} eligible series (highest priority, then largest "
                            f"volume); {len(study.series)} series in all")
        return study
    failed = [s for s in study.series if s.outcome == "failed"]
    study.outcome = "failed" if failed and len(failed) == len(study.series) else "not analysed"
    study.reason = "; ".join(f"series of {s.slices} image(s): {s.reason}" for s in study.series)
    return study
