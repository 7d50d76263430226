"""Outputs of `ichnode validate`: report.md, studies.csv, summary.json, roc_<row>.png, terminal table."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ichnode.config import TriageConfig
from ichnode.training.metrics import bland_altman, mae
from ichnode.training.plots import bland_altman_png, roc_png
from ichnode.validate import DEFINITIONS
from ichnode.validate.metrics import RowMetrics, study_label, study_prediction
from ichnode.validate.predict import REPORT_ROWS, ignored_classes
from ichnode.validate.studies import Study

TITLE = "ichnode validate (AI triage - not for diagnostic use)"


@dataclass
class Run:
    """Everything a report needs."""

    date: str
    version: str
    engines: list[tuple[str, str]]
    config_source: str
    input_dir: str
    label_file: str
    label_format: str
    triage: TriageConfig
    files: int
    series: int
    studies: list[Study]
    rows: list[RowMetrics]
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    labels_without_study: list[str] = field(default_factory=list)
    masks_unmatched: list[str] = field(default_factory=list)
    masks_skipped: list[tuple[str, str]] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(s.outcome == outcome for s in self.studies)

    def counts(self) -> dict:
        return {"files": self.files, "unreadable_files": len(self.unreadable), "series": self.series,
                "studies_in_folder": len(self.studies), "evaluated": self.count("analysed"),
                "not_analysed": self.count("not analysed"), "failed": self.count("failed"),
                "unlabelled": self.count("unlabelled"),
                "labels_without_study": len(self.labels_without_study)}


# ------------------------------------------------------------------------------------ formatting
def fmt_p(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "undefined"
    return f"{value:.3f} ({ci[0]:.3f}-{ci[1]:.3f})" if ci else f"{value:.3f}"


def fmt_sens(m: RowMetrics) -> str:
    if m.sensitivity is None:
        return "undefined: no positive study"
    return f"{fmt_p(m.sensitivity, m.sensitivity_ci)} {m.tp}/{m.tp + m.fn}"


def fmt_spec(m: RowMetrics) -> str:
    if m.specificity is None:
        return "undefined: no negative study"
    return f"{fmt_p(m.specificity, m.specificity_ci)} {m.tn}/{m.tn + m.fp}"


def fmt_auc(m: RowMetrics) -> str:
    a = m.auc
    if a is None:
        return ""
    if a.auc is None:
        return a.reason
    text = f"{a.auc:.3f} ({a.ci[0]:.3f}-{a.ci[1]:.3f})" if a.ci else f"{a.auc:.3f}; {a.reason}"
    return text


def summary_cells(m: RowMetrics) -> list[str]:
    if not m.reported:
        return [m.row, "", "", "not reported by the engine", "", "", ""]
    if m.n == 0:
        return [m.row, "0", "", "no labelled analysed study", "", "", ""]
    return [m.row, str(m.n), f"{m.tp + m.fn}/{m.tn + m.fp}", fmt_sens(m), fmt_spec(m), fmt_auc(m),
            m.score]


SUMMARY_HEADER = ["row", "n", "pos/neg", "sensitivity (95% CI)", "specificity (95% CI)",
                  "AUC (95% CI, DeLong)", "ROC score"]


def _num(v: float | None, digits: int = 2) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _flag(v: bool | None) -> str:
    return "" if v is None else str(int(v))


# ------------------------------------------------------------------------------------ per study
def engine_classes(studies: list[Study]) -> tuple[list[str], list[str]]:
    classes, probs = [], []
    for s in studies:
        if s.chosen:
            classes += [c for c in s.chosen.segment_classes if c not in classes]
            probs += [p for p in s.chosen.probabilities if p not in probs]
    return classes, probs


def study_rows(run: Run) -> list[dict]:
    triage = run.triage
    classes, probs = engine_classes(run.studies)
    out = []
    for s in run.studies:
        c = s.chosen
        row = {"key": s.key, "outcome": s.outcome, "reason": s.reason,
               "priority": c.priority.value if c else "not analysed",
               "priority_reason": c.priority_reason if c else "",
               "series": len(s.series), "chosen_series_images": c.slices if c else ""}
        if s.labelled_slices:
            row["labelled_slices"] = s.labelled_slices
        for r in REPORT_ROWS:
            row[f"label_{r}"] = _flag(study_label(s, r))
        for cls in classes:
            row[f"volume_ml_{cls}"] = _num(c.volumes.get(cls)) if c else ""
        row["volume_ml_total"] = _num(c.total_ml) if c else ""
        for p in probs:
            row[f"probability_{p}"] = _num(c.probabilities.get(p), 3) if c else ""
        for r in REPORT_ROWS:
            pred = study_prediction(s, r, triage) if c else None
            row[f"positive_{r}"] = ("" if c is None else "not reported" if pred is None
                                    else str(int(pred.positive)))
        row["truth_ml"] = _num(s.truth_ml)
        row["volume_error_ml"] = _num(_error(s, triage))
        row["mask"] = s.mask
        out.append(row)
    return out


def engine_ml(s: Study, triage: TriageConfig) -> float | None:
    """The engines' "any" volume of the chosen series (hemorrhage classes only)."""
    pred = study_prediction(s, "any", triage) if s.chosen else None
    return pred.volume_ml if pred else None


def _error(s: Study, triage: TriageConfig) -> float | None:
    volume = engine_ml(s, triage)
    if s.truth_ml is None or volume is None:
        return None
    return volume - s.truth_ml


# ------------------------------------------------------------------------------------ writers
def write_outputs(run: Run, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    rows = study_rows(run)
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["key", "outcome", "reason"]
    with (out_dir / "studies.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    written.append(out_dir / "studies.csv")
    plots = {}
    for m in run.rows:
        if m.roc is not None:
            name = "roc_" + m.row.replace(" ", "_") + ".png"
            label = f"{m.row}: AUC {m.auc.auc:.3f} (n={m.n})"
            plots[m.row] = roc_png([(m.roc[0], m.roc[1], label)], out_dir / name,
                                   title=f"ROC, {m.row} ({m.score})")
            written.append(plots[m.row])
    pairs = [(s.truth_ml, engine_ml(s, run.triage)) for s in run.studies if _error(s, run.triage) is not None]
    volume = None
    if pairs:
        ref, meas = zip(*pairs)
        volume = {"n": len(pairs), "mae_ml": mae(ref, meas), "bias_ml": float(sum(m - r for r, m in pairs)
                                                                             / len(pairs))}
        if len(pairs) >= 2:
            volume["bland_altman"] = bland_altman(ref, meas).as_dict()
            written.append(bland_altman_png(ref, meas, out_dir / "volume_bland_altman.png",
                                            title="Volume: engine - truth mask", unit="mL"))
    summary = {"title": TITLE, "date": run.date, "ichnode_version": run.version,
               "engines": [{"name": n, "version": v} for n, v in run.engines],
               "config": run.config_source, "input": run.input_dir, "labels": run.label_file,
               "label_format": run.label_format, "triage_thresholds": dataclasses.asdict(run.triage),
               "definitions": DEFINITIONS, "counts": run.counts(),
               "rows": [m.as_dict() for m in run.rows], "volume_error": volume, "studies": rows,
               "unreadable_files": [{"path": p, "reason": r} for p, r in run.unreadable],
               "labels_without_study": run.labels_without_study,
               "masks_unmatched": run.masks_unmatched,
               "masks_skipped": [{"path": p, "reason": r} for p, r in run.masks_skipped],
               "ignored_classes": ignored_classes(*engine_classes(run.studies))}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=_json))
    written.append(out_dir / "summary.json")
    (out_dir / "report.md").write_text(markdown(run, rows, plots, volume))
    written.append(out_dir / "report.md")
    return written


def _json(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _md_table(header: list[str], body: list[list[str]]) -> str:
    esc = lambda t: str(t).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in body]
    return "\n".join(lines)


def markdown(run: Run, rows: list[dict], plots: dict, volume: dict | None) -> str:
    c = run.counts()
    engines = ", ".join(f"{n} {v}" for n, v in run.engines)
    t = run.triage
    md = [f"# {TITLE}", "",
          f"- Date: {run.date}; ichnode {run.version}; configuration: {run.config_source}",
          f"- Engines: {engines}",
          f"- Thresholds: flag_volume_ml {t.flag_volume_ml:g}, flag_probability "
          f"{t.flag_probability:g} (positive call); priority rules of the triage section",
          f"- Input: {run.input_dir}; labels: {run.label_file} ({run.label_format})",
          f"- Counts: {c['files']} files ({c['unreadable_files']} unreadable), {c['series']} series, "
          f"{c['studies_in_folder']} studies in the folder: **{c['evaluated']} evaluated**, "
          f"{c['not_analysed']} not analysed, {c['failed']} failed, {c['unlabelled']} unlabelled; "
          f"{c['labels_without_study']} labels with no study in the folder", "",
          "## Summary", "", _md_table(SUMMARY_HEADER, [summary_cells(m) for m in run.rows]), ""]
    for m in run.rows:
        if m.reported and m.n and m.roc is None:
            md.append(f"- {m.row}: no ROC plot, AUC {m.auc.reason if m.auc else 'undefined'}")
        if m.unlabelled:
            md.append(f"- {m.row}: {m.unlabelled} analysed studies have no label for this row (left out)")
    if plots:
        md += ["", "ROC plots: " + ", ".join(f"[{r}]({p.name})" for r, p in plots.items())]
    ignored = ignored_classes(*engine_classes(run.studies))
    if ignored:
        md.append(f"- Engine classes that are not hemorrhage, left out: {', '.join(ignored)}")
    md += ["", "## Definitions", "", DEFINITIONS, ""]
    if volume:
        md += ["## Volume error (truth masks)", "",
               f"{volume['n']} studies with a mask: mean absolute error {volume['mae_ml']:.2f} mL, "
               f"bias (engine - truth) {volume['bias_ml']:+.2f} mL.", ""]
    md += ["## Studies", "", _md_table(
        ["key", "outcome", "priority", "any label", "any positive", "total mL", "volume error mL",
         "reason / priority reason"],
        [[r["key"], r["outcome"], r["priority"], r["label_any"], r["positive_any"], r["volume_ml_total"],
          r["volume_error_ml"], r["reason"] or r["priority_reason"]] for r in rows]),
        "", "All columns are in studies.csv.", ""]
    if run.unreadable:
        md += ["## Unreadable files", ""] + [f"- {p}: {r}" for p, r in run.unreadable] + [""]
    if run.labels_without_study:
        shown = run.labels_without_study[:50]
        more = len(run.labels_without_study) - len(shown)
        md += ["## Labels with no study in the folder", "", ", ".join(shown)
               + (f" and {more} more (all in summary.json)" if more else ""), ""]
    if run.masks_unmatched or run.masks_skipped:
        md += ["## Masks not used", ""] + [f"- {p}: matched no analysed series" for p in run.masks_unmatched]
        md += [f"- {p}: {r}" for p, r in run.masks_skipped] + [""]
    return "\n".join(md)


def print_summary(run: Run, console: Console | None = None) -> None:
    console = console or Console(width=160)
    c = run.counts()
    table = Table(title=TITLE)
    for col in SUMMARY_HEADER:
        table.add_column(col, overflow="fold")
    for m in run.rows:
        table.add_row(*summary_cells(m))
    console.print(table)
    console.print(f"engines: {', '.join(f'{n} {v}' for n, v in run.engines)}; positive call: volume >= "
                  f"{run.triage.flag_volume_ml:g} mL or probability >= {run.triage.flag_probability:g}")
    console.print(f"{c['studies_in_folder']} studies in the folder: {c['evaluated']} evaluated, "
                  f"{c['not_analysed']} not analysed, {c['failed']} failed, {c['unlabelled']} unlabelled; "
                  f"{c['unreadable_files']} unreadable files; {c['labels_without_study']} labels with no "
                  "study in the folder", highlight=False)
    for s in run.studies:
        if s.outcome == "analysed":
            pred = study_prediction(s, "any", run.triage)
            called = "not reported" if pred is None else ("positive" if pred.positive else "negative")
            console.print(f"  {s.key}: evaluated; label any={_flag(study_label(s, 'any')) or '?'}, "
                          f"engine {called} ({s.chosen.total_ml:.1f} mL), priority "
                          f"{s.chosen.priority.value}" + (f"; {s.reason}" if s.reason else ""),
                          highlight=False)
        else:
            console.print(f"  {s.key}: {s.outcome}: {s.reason}", highlight=False)
    if run.labels_without_study:
        shown = run.labels_without_study[:10]
        more = len(run.labels_without_study) - len(shown)
        console.print("  labels with no study: " + ", ".join(shown) + (f" and {more} more" if more else ""),
                      highlight=False)
    for p, r in run.unreadable[:20]:
        console.print(f"  unreadable file {p}: {r}", highlight=False)
