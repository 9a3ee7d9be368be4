"""The job life cycle: ``job_start`` creates a job and sends it, the one Celery task
(``jobs.tasks.run_job``) calls ``job_run``, views call cancel/resume. What differs between kinds
(the body, the queue, the device) is declared in ``jobs.registry``."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback as tb
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.db import CONNECTION_ERRORS, with_reconnect
from core.errors import Conflict

from .models import Job, JobStatus, MetricPoint
from .registry import JobType, job_type

logger = logging.getLogger(__name__)

ProgressFn = Callable[[dict], None]
StopFn = Callable[[], bool]
#: Metric points kept in memory while the database is unreachable (the engine's own metrics file
#: on disk keeps every point whatever happens; this bounds the worker's memory).
MAX_PENDING_POINTS = 10_000


class JobCancelled(Exception):
    """Raised inside a job's body when a cancel was requested; the job ends ``cancelled``."""


class JobOwnedElsewhere(Exception):
    """The job runs on another host (or under an owner this host cannot check) and still beats.

    The message must not be dropped: when that owner died, this message may be the only one left
    (its worker requeued it). It is delivered again after ``retry_in`` seconds, by when a dead
    owner's heartbeat has gone stale and the job is taken over.
    """

    def __init__(self, owner: str, retry_in: float) -> None:
        super().__init__(f"job is running under {owner or 'an unknown owner'}; delivering again in {retry_in:.0f} s")
        self.owner, self.retry_in = owner, retry_in


#: The one task that runs every job (jobs.tasks.run_job); the queue, not the task, says where.
RUN_JOB_TASK = "jobs.tasks.run_job"


class DeviceUnavailable(RuntimeError):
    """This worker cannot run the job: it needs more CUDA devices than the worker has."""


def job_create(*, kind: str, name: str, config: dict, user: User | None = None) -> Job:
    """The row only, nothing sent: for jobs run in-process (the demo, tests) or sent later."""
    return Job.objects.create(kind=kind, name=name[:200], config=config, created_by=user)


def job_start(*, kind: str, name: str, config: dict, user: User | None = None, enqueue: bool = True) -> Job:
    """The one way to start a job: record it and, once the surrounding transaction commits, send it
    to its kind's queue (``job_enqueue``). Raises ``UnknownJobKind`` for a kind no app registered.

    Callers may finish the row inside their transaction (a run folder named after ``job.pk``, the
    domain row pointing at it): nothing reaches a worker before they commit. With ``enqueue=False``
    the job is only recorded (run in-process, or sent later).
    """
    job_type(kind)  # refuse an unregistered kind before anything is written
    job = job_create(kind=kind, name=name, config=config, user=user)
    if enqueue:
        transaction.on_commit(lambda: job_enqueue(job))  # a Job: the caller's answer shows a broker outage
    return job


#: The error a queued job shows while its message could not be sent.
BROKER_DOWN_MESSAGE = ("Not sent to a worker yet: the message broker is unreachable. The job stays queued and "
                       "will be sent when the broker is back (when a worker starts, or `manage.py send_unsent_jobs`).")


def _broker_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError as BrokerUnreachable

    return (BrokerUnreachable, OSError)


def job_enqueue(job: Job | int) -> bool:
    """Send ``run_job(job_id)`` to the job's kind's queue; True when it went through.

    Called after the job's row is committed (``job_start`` and the resumes do). When the broker is unreachable the job stays queued
    with ``BROKER_DOWN_MESSAGE`` as its error instead of the request failing, and the sweep
    (``job_send_unsent``) sends it later; a job counts as sent only once ``apply_async`` returned.
    A ``Job`` passed in is updated in memory too, so the caller's response shows the outcome.
    """
    from .tasks import run_job

    job_id = job.pk if isinstance(job, Job) else job
    kind = job.kind if isinstance(job, Job) else Job.objects.values_list("kind", flat=True).get(pk=job_id)
    try:
        run_job.apply_async(args=[job_id], queue=job_type(kind).queue)
    except _broker_errors() as exc:
        logger.warning("job %s: the broker is unreachable (%s); left queued for job_send_unsent", job_id, exc)
        fields = {"task_name": RUN_JOB_TASK, "enqueued_at": None, "error": BROKER_DOWN_MESSAGE}
        sent = False
    else:
        fields = {"task_name": RUN_JOB_TASK, "enqueued_at": timezone.now()}
        sent = True
    # Only a queued job's send is recorded: a fast worker may already have claimed (even finished) it.
    Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(**fields)
    if isinstance(job, Job) and job.status == JobStatus.QUEUED:
        for name, value in fields.items():
            setattr(job, name, value)
    return sent


def job_send_unsent(*, older_than_s: float | None = None) -> int:
    """Send the queued jobs whose message never reached the broker; returns how many were sent.

    Runs when a worker starts (the broker is up then) and from ``manage.py send_unsent_jobs``.
    With ``older_than_s`` it also sends again jobs sent longer ago than that and still queued (a
    message lost with a broker that kept no data); a job legitimately waiting behind a long run
    looks the same, so that is for an operator to ask for. Sending twice is harmless: a job is
    claimed once (``job_claim``). Each row is locked while it is sent, so two sweeps do not both
    send it, and a job whose send fails again is left for the next sweep. A job is always sent as
    ``run_job`` to its kind's queue of today, whatever task name an older release recorded.
    """
    from celery import current_app

    unsent = Q(enqueued_at__isnull=True)
    if older_than_s is not None:
        unsent |= Q(enqueued_at__lt=timezone.now() - timedelta(seconds=older_than_s))
    candidates = list(Job.objects.filter(unsent, status=JobStatus.QUEUED).exclude(task_name="")
                      .values_list("pk", flat=True))
    sent = 0
    for job_id in candidates:
        with transaction.atomic():
            job = (Job.objects.select_for_update(skip_locked=True)
                   .filter(unsent, pk=job_id, status=JobStatus.QUEUED).exclude(task_name="").first())
            if job is None:
                continue  # claimed, cancelled or being sent by another sweep meanwhile
            try:
                queue = job_type(job.kind).queue
            except LookupError as exc:
                logger.error("job %s: not sent: %s", job.pk, exc)
                continue
            try:
                current_app.send_task(RUN_JOB_TASK, args=[job.pk], queue=queue)
            except _broker_errors() as exc:
                logger.warning("job %s: still cannot reach the broker (%s)", job.pk, exc)
                return sent
            job.task_name, job.enqueued_at = RUN_JOB_TASK, timezone.now()
            job.error = "" if job.error == BROKER_DOWN_MESSAGE else job.error
            job.save(update_fields=["task_name", "enqueued_at", "error"])
        logger.info("job %s: sent to queue %s (its first send had failed or was lost)", job.pk, queue)
        sent += 1
    return sent


LOG_LINES = 200  # lines of the run log kept on the job for the dashboard


def _stale_after() -> float:
    """No heartbeat for this long while "running" means the job's worker died."""
    return float(settings.JOB_STALE_AFTER_SECONDS)


def _this_host() -> str:
    """The host part of an owner: the host name, plus the pid namespace where there is one, so
    that two containers which happen to share a host name never judge each other's pids."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/{namespace.removeprefix('pid:[').rstrip(']')}"


def worker_identity() -> str:
    """"host:pid" of this process (computed each time: a forked pool process has its own pid)."""
    return f"{_this_host()}:{os.getpid()}"


def _owner_on_this_host(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    return host == _this_host() and pid.isdigit()


def _owner_is_dead(job: Job) -> bool:
    """True when the job's owner ran on this host and that process is gone: no such pid, a zombie
    (killed, not yet reaped), or a process started after the claim (its pid was reused)."""
    import psutil

    try:
        process = psutil.Process(int(job.owner.rpartition(":")[2]))
        created, state = process.create_time(), process.status()
    except psutil.NoSuchProcess:
        return True
    if state == psutil.STATUS_ZOMBIE:
        return True
    # The owner existed before it claimed the job; 1 s of slack for the clock that create_time is
    # derived from (boot time + ticks) drifting against the wall clock.
    return job.started_at is not None and created > job.started_at.timestamp() + 1.0


def job_claim(job_id: int) -> Job | None:
    """queued → running, atomically, owned by this process. None when there is nothing to run: the
    job is finished, cancelled, or running under a live owner on this host (a duplicate message).

    A job still marked running lost its worker (killed, OOM, reboot) when its heartbeat is stale,
    or at once when its owner ran on this host and that process is dead; the redelivered message
    then takes it over and the engine resumes from its last checkpoint. An owner on another host
    cannot be checked: while it beats, ``JobOwnedElsewhere`` asks for the message to come back
    once the heartbeat would be stale. The taken-over job carries ``takeover`` (why) for the log.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            return None
        takeover = ""
        if job.status == JobStatus.RUNNING:
            age = (timezone.now() - job.heartbeat_at).total_seconds() if job.heartbeat_at else None
            if age is not None and age > _stale_after():
                takeover = f"no heartbeat from {job.owner or 'its worker'} for {age:.0f} s"
            elif job.owner and _owner_on_this_host(job.owner):
                if not _owner_is_dead(job):
                    return None  # alive here: its worker still holds the job's message
                takeover = f"previous owner {job.owner} died (last heartbeat {age or 0:.1f} s ago)"
            else:
                raise JobOwnedElsewhere(job.owner, retry_in=_stale_after() - (age or 0) + 1)
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
        job.owner = worker_identity()
        job.attempts += 1
        job.error = job.traceback = ""
        job.save(update_fields=["status", "started_at", "heartbeat_at", "owner", "attempts", "error", "traceback"])
        if takeover:
            logger.warning("job %s: taking over (%s)", job.pk, takeover)
        job.takeover = takeover
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
        self._owner = job.owner
        self._superseded = False

    def _own_row(self):
        """The job's row while this run still owns it: once another process took the job over (this
        one was presumed dead), this run's progress and outcome must not overwrite the new run's."""
        rows = Job.objects.filter(pk=self.job.pk)
        return rows.filter(owner=self._owner) if self._owner else rows

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
        def write() -> int:
            with transaction.atomic():
                updated = self._own_row().update(**fields, log_tail=self.log_text)
                if updated:
                    MetricPoint.objects.bulk_create(list(self._pending))
                return updated

        if not with_reconnect(write, patience_s=patience_s) and not self._superseded:
            self._superseded = True
            logger.warning("job %s: taken over by another process; this run's writes are dropped", self.job.pk)
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
                stop = Q(cancel_requested=True)
                if self._owner:  # taken over by another process: stop, so two runs never train side by side
                    stop |= ~Q(owner=self._owner)
                self._cancel = self._superseded or Job.objects.filter(stop, pk=self.job.pk).exists()
            except CONNECTION_ERRORS:
                connection.close()  # asked again at the next poll, on a new connection
        return self._cancel


def _start_heartbeat(job_id: int) -> Callable[[], None]:
    """Beat from a side thread, well inside the stale limit, so long silent phases (model
    loading, evaluation) never look like a dead worker; returns the function that stops it.

    Each beat names its owner and only counts while this process still owns the job: an owner
    presumed dead and taken over (a frozen host that wakes up) cannot make the job look like its own.
    """
    stop = threading.Event()
    interval = max(0.5, min(20.0, _stale_after() / 3))
    owner = worker_identity()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, owner=owner).update(
                        heartbeat_at=timezone.now())
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
    try:
        job = with_reconnect(lambda: job_claim(job_id), patience_s=_outage_patience())
    except JobOwnedElsewhere as busy:
        _deliver_again_later(job_id, busy)
        return None
    if job is None:
        return None
    reporter = JobReporter(job)
    if job.takeover:
        reporter.log(f"taking over: {job.takeover}")
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


def _deliver_again_later(job_id: int, busy: JobOwnedElsewhere) -> None:
    """Send this task's message again with a countdown (a new message, so no retry limit applies):
    the job is checked again once a dead owner's heartbeat would be stale. Called outside a worker
    (a job run inline), there is no message to keep."""
    from celery import current_task

    if not current_task or not current_task.request.id or current_task.request.called_directly:
        logger.info("job %s: %s (not in a worker: nothing to deliver again)", job_id, busy)
        return
    # Back to the queue it came from: without one, Celery would send it to the default queue.
    queue = (current_task.request.delivery_info or {}).get("routing_key") or None
    current_task.apply_async(args=current_task.request.args, kwargs=current_task.request.kwargs,
                             countdown=max(1.0, busy.retry_in), queue=queue)
    logger.info("job %s: %s", job_id, busy)


def job_run(job_id: int, *, queue: str = "") -> Job | None:
    """Run job ``job_id`` here, the way its kind declares (``jobs.registry``); what ``run_job``
    does on a worker, and what the demo and tests call to run a job in-process.

    A job of a kind no app registered fails at once with that reason (it would never run
    anywhere). A job this worker's devices cannot run fails with ``DeviceUnavailable`` before its
    body starts (``queue`` is the queue it came from, for the message). Returns the job as it
    ended, or None when there was nothing to run (see ``job_execute``).
    """
    kind = with_reconnect(lambda: Job.objects.filter(pk=job_id).values_list("kind", flat=True).first(),
                          patience_s=_outage_patience())
    if kind is None:
        return None
    try:
        declared = job_type(kind)
    except LookupError as exc:
        logger.error("job %s: %s", job_id, exc)
        Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED, error=f"UnknownJobKind: {exc}"[:4000], finished_at=timezone.now())
        return Job.objects.filter(pk=job_id).first()

    def body(job: Job, reporter: JobReporter) -> dict:
        _check_devices(declared, job, queue)
        if declared.torch:
            _set_torch_threads()
        return declared.hook("execute")(job, reporter)

    job = job_execute(job_id, body)
    finished = declared.hook("finished")
    if finished is not None:
        latest = Job.objects.filter(pk=job_id).first()
        if latest is not None and latest.is_finished:  # not while another process still runs it
            finished(latest)
    return job


def _set_torch_threads() -> None:
    import torch

    torch.set_num_threads(max(1, settings.TORCH_NUM_THREADS))


def cuda_devices_needed(job: Job, declared: JobType) -> int:
    """CUDA devices ``job`` needs: one per process when its configured device is CUDA, else none
    (``auto`` takes a GPU where there is one and runs on the CPU otherwise)."""
    if not str(job.config.get("device", "")).startswith("cuda"):
        return 0
    processes = declared.hook("processes")
    return max(1, int(processes(job))) if processes is not None else 1


def cuda_devices_here() -> int:
    """CUDA devices this worker sees (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _check_devices(declared: JobType, job: Job, queue: str) -> None:
    """Refuse a job this worker cannot run, with the reason on the job.

    The job fails rather than going back to the queue: a queue whose workers all lack the devices
    (a routing or start-up mistake) would pass the message round forever with nobody told, while a
    failed job says what is wrong where the user looks, and is resumed once it is fixed.
    """
    needed = cuda_devices_needed(job, declared)
    if not needed:
        return
    have = cuda_devices_here()
    if have < needed:
        raise DeviceUnavailable(f"this worker has {have} CUDA device{'s' if have != 1 else ''}; job needs {needed} "
                                f"(queue {queue or declared.queue})")


def job_resume(*, job: Job, enqueue: bool = True) -> Job:
    """failed/cancelled → queued and sent again; the engine continues from its last checkpoint.

    ``Conflict`` when the kind is not resumable or its check refuses this job (a run that already
    registered its model).
    """
    declared = job_type(job.kind)
    if not declared.resumable:
        raise Conflict(f"{job.get_kind_display()} jobs cannot be resumed; start a new one.")
    check = declared.hook("resume_check")
    if check is not None:
        check(job)
    with transaction.atomic():
        job = job_requeue_for_resume(job=job)
        if enqueue:
            transaction.on_commit(lambda: job_enqueue(job))
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
        # A fresh send follows (job_enqueue); until it is known to have failed, the sweep leaves it be.
        job.task_name, job.enqueued_at = "", None
        job.save(update_fields=["status", "cancel_requested", "finished_at", "config", "task_name", "enqueued_at"])
    return job

