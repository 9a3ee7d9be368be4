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

from core.db import CONNECTION_ERRORS, with_reconnect
from core.errors import Conflict

from .models import Job, JobStatus, MetricPoint

ProgressFn = Callable[[dict], None]
StopFn = Callable[[], bool]
#: Metric points kept in memory while the database is unreachable (the engine's own metrics file
#: on disk keeps every point whatever happens; this bounds the worker's memory).
MAX_PENDING_POINTS = 10_000


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


def _outage_patience() -> float:
    """How long a job's claim and its outcome wait for an unreachable database to come back."""
    return float(settings.JOB_DB_OUTAGE_SECONDS)


class JobReporter:
    """Progress and cancellation callbacks handed to an engine.

    Writes at most every ``min_interval`` seconds (plus every eval and the final step), so a fast
    loop does not hammer the database; each write is one UPDATE and maybe one INSERT.

    While the database is unreachable the run goes on: metric points wait in memory and are
    written with the first update that gets through, and a cancel request is read once it is
    back. Losing the database never fails a training run by itself.
    """

    def __init__(self, job: Job, *, min_interval: float = 0.5) -> None:
        self.job = job
        self.min_interval = min_interval
        self._last_write = float("-inf")  # the first point is always written
        self._last_poll = 0.0
        self._started = time.monotonic()
        self._cancel = False
        self._log: deque[str] = deque(maxlen=LOG_LINES)
        self._pending: deque[MetricPoint] = deque(maxlen=MAX_PENDING_POINTS)
        self._offline_since: float | None = None

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
        self._pending.append(MetricPoint(job=self.job, step=step, kind=kind, values=values))
        self.log(f"{kind} step {step}/{total or '?'} " + " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
            if isinstance(v, int | float | str)))
        if kind != "train":  # eval points are recorded but do not move the progress bar
            self._write({})
            return
        self._write({"step": step, "total_steps": total, "progress": fraction, "eta_seconds": eta,
                     "last_metrics": values})

    def _save(self, fields: dict, *, patience_s: float) -> None:
        """The pending metric points and ``fields`` of the job row, in one transaction; raises one
        of ``CONNECTION_ERRORS`` when the database stayed unreachable for ``patience_s``."""
        def write() -> None:
            with transaction.atomic():
                MetricPoint.objects.bulk_create(list(self._pending))
                Job.objects.filter(pk=self.job.pk).update(**fields, log_tail=self.log_text)

        with_reconnect(write, patience_s=patience_s)
        self._pending.clear()

    def _write(self, fields: dict) -> None:
        """A progress update: best effort, kept for the next one while the database is unreachable."""
        # One second of retries to ride out a dropped socket; once offline, one try per update, so
        # a long outage does not slow the training loop down.
        patience = 0.0 if self._offline_since is not None else 1.0
        try:
            self._save({**fields, "heartbeat_at": timezone.now()}, patience_s=patience)
        except CONNECTION_ERRORS as exc:
            if self._offline_since is None:
                self._offline_since = time.monotonic()
                self.log(f"database unreachable ({exc.__class__.__name__}); the run goes on and its progress "
                         "is written once the database is back")
            return
        if self._offline_since is not None:
            self.log(f"database back after {time.monotonic() - self._offline_since:.1f}s; progress caught up")
            self._offline_since = None

    def finish(self, fields: dict) -> None:
        """Record the job's outcome (and any metric points still pending), waiting up to
        ``JOB_DB_OUTAGE_SECONDS`` for an unreachable database before giving up with its error."""
        self._save({**fields, "finished_at": timezone.now()}, patience_s=_outage_patience())

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
            try:
                self._cancel = Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists()
            except CONNECTION_ERRORS:
                connection.close()  # asked again at the next poll, on a new connection
        return self._cancel


def _start_heartbeat(job_id: int) -> Callable[[], None]:
    """Beat from a side thread, well inside the stale limit, so long silent phases (model
    loading, evaluation) never look like a dead worker; returns the function that stops it."""
    stop = threading.Event()
    interval = max(0.5, min(20.0, _stale_after() / 3))

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())
                except CONNECTION_ERRORS:
                    connection.close()  # keep beating on a new connection once the database is back
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()

    def stop_beating() -> None:
        stop.set()
        thread.join(5)

    return stop_beating


def job_execute(job_id: int, body: Callable[[Job, JobReporter], dict]) -> Job | None:
    """Claim the job, run ``body(job, reporter)`` and record the outcome. Never raises, except
    when the database stays unreachable for ``JOB_DB_OUTAGE_SECONDS`` as the outcome is written."""
    # A message that arrives while the database restarts waits for it: a claim that failed would
    # ack the message and leave the job queued with nothing left to run it.
    job = with_reconnect(lambda: job_claim(job_id), patience_s=_outage_patience())
    if job is None:
        return None
    reporter = JobReporter(job)
    reporter.log(f"started (attempt {job.attempts}{', resuming' if job.config.get('resume') else ''})")
    stop_beating = _start_heartbeat(job.pk)
    try:
        result = body(job, reporter) or {}
    except JobCancelled:
        reporter.log("cancelled")
        outcome = {"status": JobStatus.CANCELLED}
    except Exception as exc:  # the run records its own failure; the worker stays healthy
        error = f"{exc.__class__.__name__}: {exc}"[:4000]
        reporter.log(f"failed: {error}")
        outcome = {"status": JobStatus.FAILED, "error": error, "traceback": tb.format_exc()[-20000:]}
    else:
        reporter.log("succeeded")
        outcome = {"status": JobStatus.SUCCEEDED, "result": result, "progress": 1.0, "eta_seconds": 0}
    finally:
        stop_beating()
    # The outcome of a long run must not be lost to a database that is restarting right now. If it
    # stays away longer than the patience, the error reaches Celery and the job, still "running"
    # without heartbeats, is later marked failed (worker lost) and can resume from its checkpoint.
    reporter.finish(outcome)
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

