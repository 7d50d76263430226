"""`ichnode status` and `ichnode rerun`: the job store seen from the terminal."""
from __future__ import annotations

import json
import time

from rich.console import Console
from rich.table import Table

from ichnode.config import Config
from ichnode.errors import IllegalTransition
from ichnode.store.jobs import JobRow, JobState, JobStore
from ichnode.store.outbox import DeliveryState, Outbox, Purpose
from ichnode.triage.worklist import triage_columns

PRIORITY_COLOURS = {"critical": "bold red", "high": "yellow", "routine": "green",
                    "not analysed": "magenta"}


def job_summaries(store: JobStore, outbox: Outbox) -> list[dict]:
    series = {s.key: s for s in store.all_series()}
    rows = []
    for job in store.jobs():
        s = series[job.series_key]
        rows.append({
            "job": job.id, "state": job.state.value, "outcome": job.outcome,
            "reason": job.reason or job.error or _delivery_error(outbox, job),
            "series_uid": s.series_uid,
            "description": s.description, "modality": s.modality, "instances": s.instance_count,
            "results": len(job.results),
            "updated": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.updated)),
        })
    open_series = [{"series_uid": s.series_uid, "description": s.description,
                    "instances": s.instance_count, "state": "receiving"}
                   for s in series.values() if s.open]
    return rows + open_series


def _delivery_error(outbox: Outbox, job: JobRow) -> str | None:
    """Why a SENDING job is still sending: the last error of a result object it owes."""
    if job.state is not JobState.SENDING:
        return None
    errors = [d for d in outbox.deliveries(job.id, Purpose.RESULT)
              if d.state is DeliveryState.PENDING and d.error]
    return f"retrying ({errors[0].attempts} attempts): {errors[0].error}" if errors else None


def print_status(config: Config, as_json: bool = False) -> None:
    store, outbox = JobStore(config.database), Outbox(config.database)
    try:
        rows = job_summaries(store, outbox)
        triage = triage_columns(store, config.database)
    finally:
        outbox.close()
        store.close()
    for row in rows:
        row.update(triage.get(row.get("job"), {"priority": None, "acknowledged": None}))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="ichnode jobs (AI triage - not for diagnostic use)")
    for column in ("job", "state", "priority", "acknowledged", "outcome", "series", "description",
                   "instances", "results", "reason", "updated"):
        table.add_column(column, overflow="fold")
    colours = {"done": "green", "failed": "red", "sending": "yellow", "receiving": "cyan"}
    for row in rows:
        state = row["state"]
        priority = row.get("priority") or ""
        table.add_row(str(row.get("job", "")), f"[{colours.get(state, 'white')}]{state}[/]",
                      f"[{PRIORITY_COLOURS.get(priority, 'white')}]{priority}[/]",
                      row.get("acknowledged") or "", row.get("outcome") or "", "…" + row["series_uid"][-12:],
                      row.get("description") or "", str(row["instances"]),
                      str(row.get("results", "")), row.get("reason") or "", row.get("updated", ""))
    Console(width=160).print(table)


def rerun(config: Config, job_id: int | None, failed: bool) -> int:
    """Analyse again. A job that was delivered is sent again in full; a failed one sends only
    what its destinations did not acknowledge."""
    store, outbox = JobStore(config.database), Outbox(config.database)
    try:
        ids = [job_id] if job_id is not None else [j.id for j in store.jobs((JobState.FAILED,))]
        for jid in ids:
            try:
                if (job := store.job(jid)) is not None and job.state is JobState.DONE:
                    outbox.forget_sent(jid)
                store.requeue(jid)
                print(f"job {jid} queued again; a running node picks it up at its next sweep")
            except IllegalTransition as exc:
                print(f"job {jid}: {exc}")
                return 1
        if not ids:
            print("no failed jobs")
    finally:
        outbox.close()
        store.close()
    return 0
