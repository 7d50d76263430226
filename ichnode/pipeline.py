"""One job: assemble -> eligibility -> infer -> quantify -> write -> send.

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
from ichnode.dicom.sender import describe, send
from ichnode.dicom.stow import send_stow
from ichnode.domain import Analysis
from ichnode.errors import NotEligible, SendError
from ichnode.infer.engine import InferenceEngine
from ichnode.log import get_logger
from ichnode.quantify.volume import quantify
from ichnode.results import build_results
from ichnode.retry import backoff_s
from ichnode.store.jobs import JobState, JobStore
from ichnode.store.spool import write_atomic

log = get_logger("ichnode.pipeline")
# One sender per Destination.kind, all with sender.send's contract (SendError, on_sent per SOP).
SENDERS = {"dimse": send, "stow": send_stow}


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
    def __init__(self, config: Config, store: JobStore, engine: InferenceEngine, *,
                 events: JobEvents | None = None, audit: Audit | None = None,
                 before_read: Callable[[], None] = lambda: None):
        """before_read: called before a series' files are read (the node's Spool.settle)."""
        self.config, self.store, self.engine = config, store, engine
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

    def send_job(self, job_id: int) -> None:
        """SENDING -> DONE, or RETRY_WAIT with backoff, or FAILED after the last attempt."""
        job = self.store.job(job_id)
        if job.state is JobState.RETRY_WAIT:
            job = self.store.transition(job_id, JobState.SENDING)
        try:
            items = [describe(Path(p)) for p in job.results]
        except (OSError, AttributeError, ValueError) as exc:
            self.store.transition(job_id, JobState.FAILED,
                                  error=f"result files unreadable, rerun to rebuild: {exc}")
            log.error("job_results_unreadable", job=job_id, error=str(exc))
            return
        start = time.perf_counter()
        errors = []
        for dest in self.config.destinations:
            done = self.store.sent_uids(job_id, dest.name)
            todo = [i for i in items if i.sop_uid not in done]
            try:
                SENDERS[dest.kind](todo, dest, calling_aet=self.config.node.ae_title,
                                   timeout_s=self.config.sender.timeout_s,
                                   on_sent=lambda uid, d=dest.name: self.store.mark_sent(job_id, d, uid))
            except SendError as exc:
                errors.append(str(exc))
                self.audit.record("send_failed", job=job_id, destination=dest.name,
                                  instances=len(todo), error=str(exc))
            else:
                if todo:
                    self.audit.record("sent", job=job_id, destination=dest.name,
                                      instances=len(todo), sop_uids=[i.sop_uid for i in todo])
        timings = dict(job.timings, send_s=time.perf_counter() - start, sent_at=time.time())
        attempts = job.attempts + 1
        if not errors:
            self.store.transition(job_id, JobState.DONE, attempts=attempts, error=None, timings=timings)
            log.info("job_done", job=job_id, destinations=len(self.config.destinations))
            self._tell(self.events.on_done, job_id)
        elif attempts >= self.config.sender.max_attempts:
            self.store.transition(job_id, JobState.FAILED, attempts=attempts,
                                  error=f"sending failed after {attempts} attempts: {errors[0]}")
            log.error("job_send_failed", job=job_id, attempts=attempts, error=errors[0])
            self.audit.record("job_failed", job=job_id, attempts=attempts, error=errors[0])
            self._tell(self.events.on_failed, job_id, "send", "send failed")
        else:
            delay = backoff_s(attempts, self.config.sender.backoff_initial_s,
                              self.config.sender.backoff_max_s)
            self.store.transition(job_id, JobState.RETRY_WAIT, attempts=attempts,
                                  next_attempt=time.time() + delay, error=errors[0])
            log.warning("job_send_retry", job=job_id, attempt=attempts, delay_s=round(delay, 1),
                        error=errors[0])

    def run_job(self, job_id: int) -> None:
        self.analyse_job(job_id)
        if self.store.job(job_id).state is JobState.SENDING:
            self.send_job(job_id)
