"""One job: assemble -> eligibility -> infer -> quantify -> write -> owe the results (outbox).

`analyse_series` and `write_results` are shared by the node and by the offline `ichnode process`.
Broad exception handling happens only here, at the job boundary, where the error is recorded.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol

import pydicom

from ichnode import __version__
from ichnode.audit import Audit
from ichnode.assemble.eligibility import check_geometry, check_headers, check_images, check_size
from ichnode.assemble.series import Headers, load_volume, read_headers, stack_geometry
from ichnode.config import Config, ResultsConfig
from ichnode.delivery.dispatcher import Outcome
from ichnode.dicom.sender import describe
from ichnode.domain import Analysis
from ichnode.errors import IllegalTransition, NotEligible
from ichnode.infer.engine import InferenceEngine
from ichnode.log import get_logger
from ichnode.quantify.volume import quantify
from ichnode.results import build_results
from ichnode.store.jobs import JobState, JobStore
from ichnode.store.outbox import DeliveryState, Outbox, Purpose
from ichnode.store.spool import write_atomic

log = get_logger("ichnode.pipeline")


def analyse_headers(headers: Headers, config: Config, engine: InferenceEngine,
                    timings: dict | None = None) -> Analysis:
    """Analysis of one series' readable files, or a not-analysed Analysis with the reason."""
    timings = {} if timings is None else timings
    start = time.perf_counter()
    try:
        check_headers(headers.datasets, config.eligibility)
        geometry = stack_geometry(headers, config.eligibility.gap_tolerance)
        check_geometry(geometry, config.eligibility)
        volume = load_volume(headers, geometry)
        check_images(volume, config.eligibility)
    except NotEligible as exc:
        ordered = tuple(sorted(headers.datasets, key=lambda ds: int(ds.get("InstanceNumber") or 0)))
        return Analysis(volume=None, datasets=ordered, not_analysed=str(exc))
    timings["assemble_s"] = time.perf_counter() - start
    start = time.perf_counter()
    findings = engine.analyse(volume)
    timings["infer_s"] = time.perf_counter() - start
    quantities = quantify(findings.labels, findings.segment_classes, volume.spacing_mm)
    return Analysis(volume=volume, datasets=volume.datasets, findings=findings,
                    quantities=quantities)


def write_results(analysis: Analysis, out_dir: Path, config: ResultsConfig) -> list[Path]:
    """Build SEG, SR and SC objects and write them durably; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in build_results(analysis, software_version=__version__, config=config):
        path = out_dir / f"{ds.Modality}_{ds.SOPInstanceUID}.dcm"
        buffer = pydicom.filebase.DicomBytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        write_atomic(path, buffer.getvalue())
        paths.append(path)
    return paths


class JobEvents(Protocol):
    """What the pipeline tells the triage side (ichnode.triage.service.Triage: worklist,
    notifications, metrics) about a job."""

    def on_analysed(self, job_id: int, analysis: Analysis) -> None: ...
    def on_not_analysed(self, job_id: int, reason: str) -> None: ...
    def on_done(self, job_id: int) -> None: ...
    def on_failed(self, job_id: int, stage: str, reason: str) -> None: ...


class NoEvents:
    """JobEvents that nobody listens to (offline processing, tests)."""

    def on_analysed(self, job_id: int, analysis: Analysis) -> None:
        pass

    def on_not_analysed(self, job_id: int, reason: str) -> None:
        pass

    def on_done(self, job_id: int) -> None:
        pass

    def on_failed(self, job_id: int, stage: str, reason: str) -> None:
        pass


class Pipeline:
    def __init__(self, config: Config, store: JobStore, outbox: Outbox, engine: InferenceEngine, *,
                 events: JobEvents | None = None, audit: Audit | None = None,
                 before_read: Callable[[], None] = lambda: None):
        """before_read: called before a series' files are read (the node's Spool.settle)."""
        self.config, self.store, self.outbox, self.engine = config, store, outbox, engine
        self.events = events or NoEvents()
        self.audit = audit or Audit.disabled()
        self.before_read = before_read

    @staticmethod
    def _tell(event: Callable, job_id: int, *args) -> None:
        """Tell the triage side; its failure is logged and never breaks the job (a misspelt
        event is an AttributeError where the call is written, not here)."""
        try:
            event(job_id, *args)
        except Exception:  # noqa: BLE001 - triage must not fail a job
            log.exception("triage_hook_failed", job=job_id, hook=event.__name__)

    def analyse_job(self, job_id: int) -> None:
        """QUEUED -> ANALYSING -> SENDING (results on disk), or FAILED with the error."""
        job = self.store.transition(job_id, JobState.ANALYSING)
        series = self.store.series(job.series_key)
        timings = {"completed_at": time.time(), "last_received_at": series.last_received}
        try:
            self.before_read()
            paths = self.store.instance_paths(job.series_key)
            purges = self.store.purges(job.series_key)
            if not paths and purges:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(purges[-1]["purged"]))
                raise NotEligible(f"the received instances were deleted on {when} by retention "
                                  "(retention.purge_after_hours)")
            check_size(paths, self.config.eligibility)
            headers = read_headers(paths)
            if not headers.datasets:
                raise NotEligible("no readable instance: " + "; ".join(e for _, e in headers.unreadable))
            analysis = analyse_headers(headers, self.config, self.engine, timings)
            start = time.perf_counter()
            results = write_results(analysis, self.config.results_dir / str(job_id),
                                    self.config.results)
            timings["write_s"] = time.perf_counter() - start
        except NotEligible as exc:
            self.store.transition(job_id, JobState.FAILED, outcome="not analysed", reason=str(exc))
            log.warning("job_failed", job=job_id, reason=str(exc))
            self._tell(self.events.on_not_analysed, job_id, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the job boundary: record and keep serving
            self.store.transition(job_id, JobState.FAILED, error=f"{type(exc).__name__}: {exc}")
            log.exception("job_crashed", job=job_id)
            self._tell(self.events.on_failed, job_id, "analysis", type(exc).__name__)
            return
        outcome = "not analysed" if analysis.not_analysed else "analysed"
        if headers.unreadable and not analysis.not_analysed:
            outcome += f" ({len(headers.unreadable)} unreadable file(s) left out)"
        self.store.transition(job_id, JobState.SENDING, outcome=outcome, reason=analysis.not_analysed,
                              results=[str(p) for p in results], timings=timings)
        self._tell(self.events.on_analysed, job_id, analysis)
        log.info("job_analysed", job=job_id, series=series.series_uid, outcome=outcome,
                 reason=analysis.not_analysed, results=len(results))
        self.audit.record("analysed", job=job_id, study_uid=series.study_uid,
                          series_uid=series.series_uid, outcome=outcome, reason=analysis.not_analysed,
                          instances=len(headers.datasets), unreadable=len(headers.unreadable),
                          results=[p.name for p in results])

    def queue_delivery(self, job_id: int) -> None:
        """A SENDING job's result objects, owed to every destination (idempotent: what a
        destination acknowledged stays sent); a job that owes nothing is settled at once."""
        job = self.store.job(job_id)
        series = self.store.series(job.series_key)
        try:
            items = [describe(Path(p)) for p in job.results]
        except (OSError, AttributeError, ValueError) as exc:
            self.store.transition(job_id, JobState.FAILED,
                                  error=f"result files unreadable, rerun to rebuild: {exc}")
            log.error("job_results_unreadable", job=job_id, error=str(exc))
            return
        pairs = [(i.sop_uid, str(i.path)) for i in items]
        for dest in self.config.destinations:
            self.outbox.queue_results(job_id, dest.name, dest.kind, pairs,
                                      arrived=series.first_received if series else None)
        self.settle(job_id)

    def on_delivery(self, outcome: Outcome) -> None:
        """The dispatcher's report on a group of this job's result objects."""
        if outcome.sent:
            self.audit.record("sent", job=outcome.job_id, destination=outcome.destination,
                              instances=len(outcome.sent), sop_uids=[r.item for r in outcome.sent])
        if outcome.failed:
            self.audit.record("send_failed", job=outcome.job_id, destination=outcome.destination,
                              instances=len(outcome.failed), error=str(outcome.error))
        self.settle(outcome.job_id)

    def settle(self, job_id: int) -> None:
        """SENDING -> DONE once every destination acknowledged every object, or FAILED once the
        rest are dead letters (ichnode.store.outbox); while rows are pending, nothing changes."""
        states = self.outbox.states(job_id, Purpose.RESULT)
        job = self.store.job(job_id)
        if states.get(DeliveryState.PENDING) or job is None or job.state is not JobState.SENDING:
            return
        now = time.time()
        timings = dict(job.timings, send_s=now - job.updated, sent_at=now)
        failed = [d for d in self.outbox.deliveries(job_id, Purpose.RESULT)
                  if d.state is DeliveryState.FAILED] if states.get(DeliveryState.FAILED) else []
        try:
            if not failed:
                self.store.transition(job_id, JobState.DONE, error=None, timings=timings)
            else:
                error = f"sending failed after {failed[0].attempts} attempts: {failed[0].error}"
                self.store.transition(job_id, JobState.FAILED, error=error, timings=timings)
        except IllegalTransition:  # superseded (or settled by another thread) meanwhile
            return
        if not failed:
            log.info("job_done", job=job_id, destinations=len(self.config.destinations))
            self._tell(self.events.on_done, job_id)
        else:
            log.error("job_send_failed", job=job_id, error=failed[0].error)
            self.audit.record("job_failed", job=job_id, attempts=failed[0].attempts, error=failed[0].error)
            self._tell(self.events.on_failed, job_id, "send", "send failed")

    def run_job(self, job_id: int) -> None:
        self.analyse_job(job_id)
        if self.store.job(job_id).state is JobState.SENDING:
            self.queue_delivery(job_id)
