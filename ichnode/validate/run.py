"""`ichnode validate` end to end: analyse the folder, match labels and masks, measure, write."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ichnode import __version__
from ichnode.config import Config
from ichnode.infer.engine import InferenceEngine, build_models
from ichnode.validate.labels import LabelSet
from ichnode.validate.masks import load_masks, matches
from ichnode.validate.metrics import all_rows
from ichnode.validate.report import Run, write_outputs
from ichnode.validate.studies import (Study, analyse_series, list_files, match_studies, read_folder,
                                      series_groups)


def validate(input_dir: Path, labels: LabelSet, out_dir: Path, config: Config, *,
             masks_dir: Path | None = None, config_source: str = "<embedded default>",
             engine: InferenceEngine | None = None, console: Console | None = None) -> Run:
    console = console or Console(stderr=True)
    engine = engine or InferenceEngine(build_models(config.engine))
    input_dir = Path(input_dir)
    paths = list_files(input_dir)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        reading = progress.add_task("reading headers", total=len(paths))
        headers = read_folder(paths, lambda n: progress.advance(reading, n))
        groups = series_groups(headers)
        analysing = progress.add_task("analysing series", total=len(groups))
        series = []
        for group in groups:
            series.append(analyse_series(group, config, engine))
            progress.advance(analysing)
    studies, missing = match_studies(series, labels)
    unmatched, skipped = _attach_masks(studies, masks_dir) if masks_dir else ([], [])
    run = Run(date=dt.datetime.now().astimezone().isoformat(timespec="seconds"), version=__version__,
              engines=[(i.name, i.version) for i in engine.infos], config_source=config_source,
              input_dir=str(input_dir), label_file=str(labels.path), label_format=labels.describe(),
              triage=config.triage, files=len(paths), series=len(series), studies=studies,
              rows=all_rows(studies, config.triage),
              unreadable=[(_rel(p, input_dir), r) for p, r in headers.unreadable],
              labels_without_study=missing,
              masks_unmatched=[_rel(p, masks_dir) for p in unmatched],
              masks_skipped=[(_rel(p, masks_dir), r) for p, r in skipped])
    write_outputs(run, Path(out_dir))
    return run


def _attach_masks(studies: list[Study], masks_dir: Path):
    """Put each mask's truth volume on its study; return (unmatched paths, skipped (path, reason))."""
    masks, skipped = load_masks(masks_dir)
    unmatched = []
    for mask in masks:
        hits = [(study, s) for study in studies for s in study.series
                if (mask.kind == "seg" and s.series_uid == mask.series_uid)
                or (mask.kind == "nifti" and s.grid is not None and matches(mask, s.grid))]
        if len(hits) > 1:  # same grid (same protocol and table position): the file name decides
            names = mask_names(mask.path, masks_dir)
            hits = [(study, s) for study, s in hits
                    if any(n == k or n.startswith(k + "_") for n in names
                           for k in (study.key, s.study_uid, s.series_uid))]
            if len({id(study) for study, _ in hits}) == 1 and len(hits) > 1:
                # one study, several series on one grid (e.g. two kernels of one acquisition): the
                # mask fits them all; the chosen series is the one measured
                hits = [h for h in hits if h[1] is h[0].chosen] or hits[:1]
            if len(hits) != 1:
                skipped.append((mask.path, "its grid matches several series; name the file (or its "
                                           "folder) after the label key, StudyInstanceUID or "
                                           "SeriesInstanceUID"))
                continue
        if not hits:
            unmatched.append(mask.path)
            continue
        study, s = hits[0]
        if s is study.chosen:
            study.truth_ml, study.mask = mask.volume_ml, mask.path.name
        else:
            skipped.append((mask.path, "its series is not the one chosen for the study"))
    return unmatched, skipped


def mask_names(path: Path, root: Path) -> list[str]:
    """The mask file's name without .nii/.nii.gz/.dcm and the folders between root and it."""
    rel = Path(_rel(path, root))
    stem = rel.name
    for suffix in (".nii.gz", ".nii", ".dcm"):
        if stem.lower().endswith(suffix):
            stem = stem[:-len(suffix)]
            break
    return [stem, *rel.parent.parts]


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
