"""`ichnode process`: a folder of DICOM files in, result objects out, without the network."""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ichnode.assemble.series import Headers, read_headers
from ichnode.config import Config
from ichnode.infer.engine import InferenceEngine, build_models
from ichnode.pipeline import analyse_headers, write_results
from ichnode.store.jobs import series_key

# Side files that often sit beside DICOM files (ground truth, notes, exports): not reported.
SIDE_FILE_SUFFIXES = {".json", ".npz", ".npy", ".txt", ".md", ".csv", ".png", ".jpg"}


def group_series(headers: Headers) -> dict[str, Headers]:
    """Split headers by (study, series): a stray instance of another study gets its own group."""
    groups: dict[str, list] = defaultdict(list)
    for ds, path in zip(headers.datasets, headers.paths):
        key = series_key(str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")))
        groups[key].append((ds, path))
    return {key: Headers(tuple(d for d, _ in items), tuple(p for _, p in items), ())
            for key, items in groups.items()}


def process_folder(input_dir: Path, out_dir: Path, config: Config,
                   engine: InferenceEngine | None = None) -> list[dict]:
    engine = engine or InferenceEngine(build_models(config.engine))
    paths = sorted(p for p in Path(input_dir).rglob("*") if p.is_file() and p.suffix.lower() not in SIDE_FILE_SUFFIXES)
    headers = read_headers(paths)
    rows = [{"series_uid": "-", "slices": 1, "outcome": "unreadable", "reason": reason,
             "files": [], "path": str(path)} for path, reason in headers.unreadable]
    for key, group in group_series(headers).items():
        timings: dict = {}
        start = time.perf_counter()
        series_uid = key.split("/", 1)[1]
        try:
            analysis = analyse_headers(group, config, engine, timings)
            files = write_results(analysis, Path(out_dir) / series_uid, config.results)
        except Exception as exc:  # noqa: BLE001 - one broken series must not stop the others
            rows.append({"series_uid": series_uid, "slices": len(group.datasets), "outcome": "failed",
                         "reason": f"{type(exc).__name__}: {exc}", "files": []})
            continue
        q = analysis.quantities
        rows.append({
            "series_uid": series_uid,
            "description": str(group.datasets[0].get("SeriesDescription", "")),
            "slices": len(group.datasets),
            "outcome": "not analysed" if analysis.not_analysed else "analysed",
            "reason": analysis.not_analysed,
            "total_ml": q.total_ml if q else None,
            "abc2_ml": q.abc2.volume_ml if q and q.abc2 else None,
            "files": [str(f) for f in files],
            "seconds": time.perf_counter() - start,
            **timings,
        })
    return rows


def print_process_table(rows: list[dict]) -> None:
    table = Table(title="ichnode process (AI triage - not for diagnostic use)")
    for column in ("series", "description", "slices", "outcome", "segmented mL", "ABC/2 mL",
                   "files", "seconds", "reason"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row("…" + r["series_uid"][-12:], r.get("description") or "", str(r["slices"]),
                      r["outcome"], _fmt(r.get("total_ml")), _fmt(r.get("abc2_ml")),
                      str(len(r["files"])), _fmt(r.get("seconds")), r.get("reason") or "")
    Console(width=160).print(table)


def _fmt(value) -> str:
    return "" if value is None else f"{value:.1f}"
