"""The job life cycle. Celery tasks call ``job_execute``; views call create/cancel/resume."""
from __future__ import annotations

import threading
import time
import traceback as tb
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from core.errors import Conflict

from .models import Job, JobStatus, MetricPoint

ProgressFn = Callable[[dict], None]
StopFn = Callable[[], bool]


class JobCancelled(Exception):
    """Raised inside a job's body when a cancel was requested; the job ends ``cancelled``."""


def job_create(*, kind: str, name: str, config: dict, user: User | None = None) -> Job:
    return Job.objects.create(kind=kind, name=name[:200], config=config, created_by=user)


LOG_LINES = 200  # lines of the run log kept on the job for the dashboard


def _stale_after() -> float:
    """No heartbeat for this long while "running" means the job's worker died."""
    return float(settings.JOB_STALE_AFTER_SECONDS)


def job_claim(job_id: int) -> Job | None:
    """queued → running, atomically. None if the job is not queued (a redelivered message).

    A job still marked running whose heartbeat is stale lost its worker (killed, OOM, reboot);
    the redelivered message takes it over and the engine resumes from its last checkpoint.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            return None
        stale = (job.status == JobStatus.RUNNING and job.heartbeat_at is not None
                 and (timezone.now() - job.heartbeat_at).total_seconds() > _stale_after())
        if stale:
            job.config = {**job.config, "resume": True}
            job.save(update_fields=["config"])
        elif job.status != JobStatus.QUEUED:
            return None
        if job.cancel_requested:
            job.status, job.finished_at = JobStatus.CANCELLED, timezone.now()
            job.save(update_fields=["status", "finished_at"])
            return None
        now = timezone.now()
        job.status, job.started_at, job.heartbeat_at = JobStatus.RUNNING, now, now
        job.attempts += 1
        job.error = job.traceback = ""
        job.save(update_fields=["status", "started_at", "heartbeat_at", "attempts", "error", "traceback"])
        return job


class JobReporter:
    """Progress and cancellation callbacks handed to an engine.

    Writes at most every ``min_interval`` seconds (plus every eval and the final step), so a fast
    loop does not hammer the database; each write is one UPDATE and maybe one INSERT.
    """

    def __init__(self, job: Job, *, min_interval: float = 0.5) -> None:
        self.job = job
        self.min_interval = min_interval
        self._last_write = float("-inf")  # the first point is always written
        self._last_poll = 0.0
        self._started = time.monotonic()
        self._cancel = False
        self._log: deque[str] = deque(maxlen=LOG_LINES)

    def progress(self, event: dict) -> None:
        step, total = int(event.get("step", 0)), int(event.get("total_steps", 0) or 0)
        kind = str(event.get("kind", "train"))
        values = {k: v for k, v in event.items() if k not in ("step", "total_steps", "kind")
                  and isinstance(v, int | float | str | dict | list | None)}
        now = time.monotonic()
        final = total and step >= total
        if kind == "train" and not final and now - self._last_write < self.min_interval:
            return
        self._last_write = now
        fraction = min(1.0, step / total) if total else 0.0
        elapsed = now - self._started
        eta = (elapsed / fraction - elapsed) if fraction > 0 else None
        MetricPoint.objects.create(job=self.job, step=step, kind=kind, values=values)
        self.log(f"{kind} step {step}/{total or '?'} " + " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
            if isinstance(v, int | float | str)))
        if kind != "train":  # eval points are recorded but do not move the progress bar
            Job.objects.filter(pk=self.job.pk).update(heartbeat_at=timezone.now(), log_tail=self.log_text)
            return
        Job.objects.filter(pk=self.job.pk).update(
            step=step, total_steps=total, progress=fraction, eta_seconds=eta, last_metrics=values,
            heartbeat_at=timezone.now(), log_tail=self.log_text,
        )

    def log(self, line: str) -> None:
        """Keep a line for the run's log tail (written with the next progress update)."""
        self._log.append(f"{timezone.now():%H:%M:%S} {line}"[:500])

    @property
    def log_text(self) -> str:
        return "\n".join(self._log)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._cancel and now - self._last_poll >= self.min_interval:
            self._last_poll = now
            self._cancel = Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists()
        return self._cancel


def _start_heartbeat(job_id: int) -> Callable[[], None]:
    """Beat from a side thread, well inside the stale limit, so long silent phases (model
    loading, evaluation) never look like a dead worker; returns the function that stops it."""
    stop = threading.Event()
    interval = max(0.5, min(20.0, _stale_after() / 3))

    def beat() -> None:
        try:
            while not stop.wait(interval):
                Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()

    def stop_beating() -> None:
        stop.set()
        thread.join(5)

    return stop_beating


def job_execute(job_id: int, body: Callable[[Job, JobReporter], dict]) -> Job | None:
    """Claim the job, run ``body(job, reporter)`` and record the outcome; never raises."""
    job = job_claim(job_id)
    if job is None:
        return None
    reporter = JobReporter(job)
    reporter.log(f"started (attempt {job.attempts}{', resuming' if job.config.get('resume') else ''})")
    stop_beating = _start_heartbeat(job.pk)
    try:
        result = body(job, reporter) or {}
    except JobCancelled:
        reporter.log("cancelled")
        Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED, finished_at=timezone.now(),
                                             log_tail=reporter.log_text)
    except Exception as exc:  # the run records its own failure; the worker stays healthy
        error = f"{exc.__class__.__name__}: {exc}"[:4000]
        reporter.log(f"failed: {error}")
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.FAILED, finished_at=timezone.now(), error=error,
            traceback=tb.format_exc()[-20000:], log_tail=reporter.log_text,
        )
    else:
        reporter.log("succeeded")
        Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now(), result=result,
                                             progress=1.0, eta_seconds=0, log_tail=reporter.log_text)
    finally:
        stop_beating()
    job.refresh_from_db()
    return job


def job_fail_stale() -> int:
    """Mark running jobs whose worker stopped beating as failed (resumable); returns how many.

    Runs when a worker starts (a crashed worker's replacement cleans up after it) and from
    ``manage.py reap_stale_jobs``. A job's own redelivered message may also take it over first.
    """
    cutoff = timezone.now() - timedelta(seconds=_stale_after())
    return Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).update(
        status=JobStatus.FAILED, finished_at=timezone.now(),
        error="Worker lost: no heartbeat from the worker running this job. Resume continues from the "
              "last checkpoint.",
    )


def job_cancel(*, job: Job) -> Job:
    """Ask a job to stop; a queued job is cancelled at once, a running one at its next poll."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.is_finished:
            raise Conflict(f"The job is already {job.status}.")
        job.cancel_requested = True
        fields = ["cancel_requested"]
        if job.status == JobStatus.QUEUED:
            job.status, job.finished_at = JobStatus.CANCELLED, timezone.now()
            fields += ["status", "finished_at"]
        job.save(update_fields=fields)
    return job


def job_requeue_for_resume(*, job: Job) -> Job:
    """failed/cancelled → queued, keeping the run folder so the engine resumes from its checkpoint."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise Conflict(f"Only failed or cancelled jobs can be resumed (this one is {job.status}).")
        job.status, job.cancel_requested, job.finished_at = JobStatus.QUEUED, False, None
        job.config = {**job.config, "resume": True}
        job.save(update_fields=["status", "cancel_requested", "finished_at", "config"])
    return job

