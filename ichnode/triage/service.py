"""The triage side of a running node: the pipeline's hooks fill the worklist, owe notifications
(outbox rows, sent by ichnode.delivery like every delivery) and feed the metrics.

It implements pipeline.JobEvents; its failures never reach the pipeline (Pipeline._tell logs
and carries on).
"""
from __future__ import annotations

import time

from ichnode.config import Config, NotifyConfig
from ichnode.delivery.dispatcher import Outcome
from ichnode.domain import Analysis, ModelInfo, Priority
from ichnode.log import get_logger
from ichnode.store.jobs import JobStore, SeriesRow
from ichnode.store.outbox import Outbox
from ichnode.triage.images import write_key_images
from ichnode.triage.metrics import Metrics
from ichnode.triage.priority import prioritise
from ichnode.triage.worklist import WorklistStore

log = get_logger("ichnode.triage")


def notification_channels(notify: NotifyConfig) -> list[str]:
    """The outbox channels (ichnode.delivery.channels) that `notify:` configures."""
    return ([] if notify.mllp is None else ["mllp"]) + ([] if notify.webhook_url is None else ["webhook"])


def _text(ds, keyword: str) -> str | None:
    value = ds.get(keyword) if ds is not None else None
    return None if value in (None, "") else str(value)


class Triage:
    def __init__(self, config: Config, store: JobStore, outbox: Outbox,
                 models: tuple[ModelInfo, ...] = ()):
        self.config, self.store, self.outbox, self.models = config, store, outbox, tuple(models)
        self.worklist = WorklistStore(config.database, store)
        self.metrics = Metrics(store, outbox)

    def close(self) -> None:
        self.worklist.close()

    def notify(self, job_id: int) -> int:
        """Owe each configured notification channel a message about a job's row; returns how many."""
        row = self.worklist.get(job_id)
        if row is None or row["priority"] not in self.config.notify.priorities:
            return 0
        channels = notification_channels(self.config.notify)
        for channel in channels:
            self.outbox.queue_notification(job_id, channel, arrived=row["arrived"])
        return len(channels)

    def on_notification(self, outcome: Outcome) -> None:
        """The dispatcher's report on a notification: the metrics."""
        for n in outcome.sent:
            ttn = time.time() - n.arrived if n.arrived is not None else None
            self.metrics.notifications.labels(channel=outcome.channel, result="sent").inc()
            if ttn is not None:
                self.metrics.time_to_notification.labels(channel=outcome.channel).observe(ttn)
            self.metrics.stage.labels(stage="notify").observe(max(0.0, time.time() - n.created))
            log.info("notification_sent", job=outcome.job_id, channel=outcome.channel,
                     attempts=n.attempts + 1, time_to_notification_s=None if ttn is None else round(ttn, 3))
        if outcome.failed:
            result = "failed" if outcome.gave_up else "retry"
            self.metrics.notifications.labels(channel=outcome.channel, result=result).inc(len(outcome.failed))
            if outcome.gave_up:
                self.metrics.failure("notify", outcome.error.ack_code or "gave up")

    # --- pipeline hooks ---------------------------------------------------------------------
    def on_stored(self, series: SeriesRow) -> None:
        self.metrics.instances.inc()
        if series.instance_count == 1 and series.generation == 1:
            self.metrics.series.inc()

    def on_analysed(self, job_id: int, analysis: Analysis) -> None:
        """Priority, key images and the worklist row of an analysed (or not analysed) series."""
        job = self.store.job(job_id)
        series = self.store.series(job.series_key)
        result = prioritise(analysis, self.config.triage)
        thumbnail, keys = write_key_images(analysis, self.config.results_dir / str(job_id) / "triage",
                                           self.config.results.key_slices)
        ds = analysis.datasets[0] if analysis.datasets else None
        findings, q = analysis.findings, analysis.quantities
        infos = (self.models or (findings.model,)) if findings is not None else ()
        models = [{"name": m.name, "version": m.version} for m in infos]
        self.worklist.upsert(
            job_id, series_key=job.series_key, study_uid=series.study_uid,
            series_uid=series.series_uid, priority=result.priority.value,
            priority_rank=result.priority.rank, reason=result.reason, flags=list(result.flags),
            volumes={k: round(v, 3) for k, v in (q.volume_ml_by_class if q else {}).items()},
            probabilities=dict(findings.probabilities) if findings else {},
            total_ml=q.total_ml if q else None,
            abc2_ml=q.abc2.volume_ml if q and q.abc2 else None,
            abc2_ratio=q.abc2_ratio if q else None, lesion_count=q.lesion_count if q else None,
            iph_location=findings.iph_location if findings else None, models=models,
            thumbnail=thumbnail, key_images=keys,
            patient_name=_text(ds, "PatientName"), patient_id=_text(ds, "PatientID"),
            accession=_text(ds, "AccessionNumber"), study_description=_text(ds, "StudyDescription"),
            series_description=_text(ds, "SeriesDescription") or series.description,
            study_date=_text(ds, "StudyDate"), study_time=_text(ds, "StudyTime"),
            modality=_text(ds, "Modality") or series.modality,
            scanner_model=_text(ds, "ManufacturerModelName"), slices=len(analysis.datasets),
            arrived=series.first_received, analysed=time.time())
        self.metrics.triaged.labels(priority=result.priority.value).inc()
        if findings is not None:
            self.metrics.observe_score(findings.probabilities, _text(ds, "ManufacturerModelName"))
        if analysis.not_analysed:
            self.metrics.failure("eligibility", analysis.not_analysed)
        log.info("job_triaged", job=job_id, priority=result.priority.value, flags=list(result.flags))

    def on_not_analysed(self, job_id: int, reason: str) -> None:
        """No Analysis at all (no readable instance): a row that says so, and a notification."""
        job = self.store.job(job_id)
        series = self.store.series(job.series_key)
        self.worklist.upsert(
            job_id, series_key=job.series_key, study_uid=series.study_uid,
            series_uid=series.series_uid, priority=Priority.NOT_ANALYSED.value,
            priority_rank=Priority.NOT_ANALYSED.rank, reason=f"not analysed: {reason}",
            series_description=series.description, modality=series.modality,
            slices=series.instance_count, arrived=series.first_received, analysed=time.time())
        self.metrics.triaged.labels(priority=Priority.NOT_ANALYSED.value).inc()
        self.metrics.failure("eligibility", reason)
        self.notify(job_id)

    def on_done(self, job_id: int) -> None:
        """Results delivered: stage latencies, then the notifications."""
        job = self.store.job(job_id)
        series = self.store.series(job.series_key)
        self.worklist.set_delivered(job_id, True)
        self.metrics.observe_timings(job.timings, series.first_received if series else None)
        self.notify(job_id)

    def on_failed(self, job_id: int, stage: str, reason: str) -> None:
        """A crash in analysis, or sending given up. A triaged study is still notified: the
        radiologists need the flag even when the PACS did not get the objects."""
        self.metrics.failure(stage, reason)
        if stage == "send" and self.worklist.get(job_id) is not None:
            self.worklist.set_delivered(job_id, False)
            self.notify(job_id)
