"""Who runs a job: the owner named by the claim and the heartbeat, the takeover of a job whose
owner died on this host, the redelivery later of a job owned on another host, and the send of a
job to the broker (recorded, left queued with a clear message when the broker is down, swept)."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import psutil
import pytest
from django.core.management import call_command
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from jobs.models import Job, JobStatus, MetricPoint
from jobs.services import (
    BROKER_DOWN_MESSAGE,
    RUN_JOB_TASK,
    JobOwnedElsewhere,
    JobReporter,
    _start_heartbeat,
    _this_host,
    job_claim,
    job_create,
    job_enqueue,
    job_execute,
    job_requeue_for_resume,
    job_send_unsent,
    worker_identity,
)

pytestmark = pytest.mark.django_db


def running_job(owner: str, *, beat_age: float = 0.0, started_ago: float = 60.0) -> Job:
    """A job claimed by ``owner``, last heartbeat ``beat_age`` seconds ago."""
    job = job_create(kind="reward", name="t", config={})
    job_claim(job.pk)
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(owner=owner, heartbeat_at=now - timedelta(seconds=beat_age),
                                         started_at=now - timedelta(seconds=started_ago))
    return Job.objects.get(pk=job.pk)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.django_db(transaction=True)  # the heartbeat thread has its own connection
def test_the_claim_names_its_owner_and_beats_only_count_for_it(settings):
    settings.JOB_STALE_AFTER_SECONDS = 1.5  # beats every 0.5 s
    job = job_claim(job_create(kind="reward", name="t", config={}).pk)
    assert job.owner == worker_identity() and job.owner.endswith(":" + str(psutil.Process().pid))
    old = timezone.now() - timedelta(minutes=5)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=old)
    stop = _start_heartbeat(job.pk)
    try:
        time.sleep(1.2)
        assert Job.objects.get(pk=job.pk).heartbeat_at > old  # its own beats count
        Job.objects.filter(pk=job.pk).update(owner="elsewhere:1", heartbeat_at=old)  # taken over
        time.sleep(1.2)
        assert Job.objects.get(pk=job.pk).heartbeat_at == old  # a superseded owner's beats do not
    finally:
        stop()


def test_a_dead_owner_on_this_host_is_taken_over_at_once_despite_a_fresh_heartbeat(settings):
    settings.JOB_STALE_AFTER_SECONDS = 300
    gone = f"{_this_host()}:{dead_pid()}"
    job = running_job(gone, beat_age=0.5)
    taken = job_claim(job.pk)
    assert taken is not None
    assert (taken.attempts, taken.config["resume"], taken.owner) == (2, True, worker_identity())
    assert taken.takeover.startswith(f"previous owner {gone} died (last heartbeat 0.")


def test_a_live_owner_on_this_host_keeps_its_job():
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as alive:
        try:
            job = running_job(f"{_this_host()}:{alive.pid}", beat_age=0.5, started_ago=0)
            assert job_claim(job.pk) is None
            assert Job.objects.get(pk=job.pk).attempts == 1
        finally:
            alive.kill()


def test_a_pid_reused_by_a_process_started_after_the_claim_is_not_the_owner(settings):
    settings.JOB_STALE_AFTER_SECONDS = 300
    # This test process is alive, but it started long after a claim made a day ago.
    job = running_job(f"{_this_host()}:{psutil.Process().pid}", beat_age=0.5, started_ago=86_400)
    taken = job_claim(job.pk)
    assert taken is not None and taken.attempts == 2 and "died" in taken.takeover


def test_an_owner_on_another_host_that_still_beats_sends_the_message_back_later(settings):
    settings.JOB_STALE_AFTER_SECONDS = 60
    job = running_job("gpu-box-7/4026531836:1234", beat_age=20)
    with pytest.raises(JobOwnedElsewhere) as busy:
        job_claim(job.pk)
    assert busy.value.retry_in == pytest.approx(41, abs=1)  # just after the heartbeat would be stale
    job.refresh_from_db()
    assert (job.status, job.attempts, job.owner) == (JobStatus.RUNNING, 1, "gpu-box-7/4026531836:1234")
    # Run inline (no message to send again): nothing runs, nothing breaks.
    assert job_execute(job.pk, lambda j, r: pytest.fail("must not run")) is None
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    taken = job_claim(job.pk)
    assert taken.attempts == 2 and taken.takeover.startswith("no heartbeat from gpu-box-7")


class FakeBroker:
    """Stands in for ``run_job.apply_async``: records each send (args, queue) or fails as Redis does."""

    def __init__(self) -> None:
        self.fail, self.sent = False, []

    def apply_async(self, args, queue=None):
        if self.fail:
            raise BrokerUnreachable("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.sent.append((args, queue))


@pytest.fixture
def broker(monkeypatch) -> FakeBroker:
    from jobs.tasks import run_job

    fake = FakeBroker()
    monkeypatch.setattr(run_job, "apply_async", fake.apply_async)
    return fake


def test_enqueue_records_the_send_or_leaves_the_job_queued_with_a_message(broker):
    job = job_create(kind="reward", name="t", config={})
    broker.fail = True
    assert job_enqueue(job) is False
    stored = Job.objects.get(pk=job.pk)
    for j in (job, stored):  # the caller's object too: its response says so
        assert (j.status, j.enqueued_at, j.task_name, j.error) == (JobStatus.QUEUED, None, RUN_JOB_TASK,
                                                                  BROKER_DOWN_MESSAGE)
    broker.fail = False
    assert job_enqueue(job.pk) is True
    assert broker.sent == [([job.pk], "gpu")]  # the reward kind's queue
    assert Job.objects.get(pk=job.pk).enqueued_at is not None


def test_the_sweep_sends_only_jobs_whose_send_failed(monkeypatch, broker):
    from config.celery_app import app

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: sent.append((name, args, queue)))
    unsent = job_create(kind="reward", name="unsent", config={})
    broker.fail = True
    job_enqueue(unsent)
    broker.fail = False
    delivered = job_create(kind="snapshot", name="sent", config={})
    job_enqueue(delivered)
    job_create(kind="reward", name="never asked to run", config={})  # enqueue=False: run by its caller
    assert job_send_unsent() == 1
    assert sent == [(RUN_JOB_TASK, [unsent.pk], "gpu")]
    unsent.refresh_from_db()
    assert unsent.enqueued_at is not None and unsent.error == ""
    assert job_send_unsent() == 0  # idempotent: it is sent now
    # A message lost with the broker: only sent again when asked, past the threshold.
    Job.objects.filter(pk=delivered.pk).update(enqueued_at=timezone.now() - timedelta(hours=2))
    call_command("send_unsent_jobs", "--older-than", "3600")
    assert sent[-1] == (RUN_JOB_TASK, [delivered.pk], "default")


def test_the_sweep_sends_a_job_recorded_under_an_old_task_name_as_run_job(monkeypatch):
    """Jobs left unsent by the release before the registry carry its per-kind task name."""
    from config.celery_app import app

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: sent.append((name, args, queue)))
    job = job_create(kind="export", name="old", config={})
    Job.objects.filter(pk=job.pk).update(task_name="annotation.tasks.export_task")
    assert job_send_unsent() == 1
    assert sent == [(RUN_JOB_TASK, [job.pk], "default")]
    assert Job.objects.get(pk=job.pk).task_name == RUN_JOB_TASK


def test_the_sweep_keeps_a_job_queued_while_the_broker_is_still_down(monkeypatch, broker):
    from config.celery_app import app

    def down(name, args, queue):
        raise BrokerUnreachable("Connection refused")

    monkeypatch.setattr(app, "send_task", down)
    job = job_create(kind="reward", name="t", config={})
    broker.fail = True
    job_enqueue(job)
    assert job_send_unsent() == 0
    job.refresh_from_db()
    assert (job.status, job.enqueued_at, job.error) == (JobStatus.QUEUED, None, BROKER_DOWN_MESSAGE)


def test_a_resume_is_not_swept_before_its_own_send_fails(broker):
    job = job_create(kind="reward", name="t", config={})
    job_enqueue(job)
    job = job_execute(job.pk, lambda j, r: (_ for _ in ()).throw(RuntimeError("boom")))
    resumed = job_requeue_for_resume(job=job)
    assert (resumed.task_name, resumed.enqueued_at) == ("", None)
    assert job_send_unsent() == 0


def test_a_run_that_was_taken_over_stops_and_its_writes_are_dropped(settings):
    """An owner presumed dead that is in fact alive (a frozen host waking up) must not train beside
    the run that took its job over, nor overwrite that run's progress or outcome."""
    settings.JOB_STALE_AFTER_SECONDS = 300
    job = job_claim(job_create(kind="reward", name="t", config={}).pk)
    old_run = JobReporter(job, min_interval=0)
    old_run.progress({"step": 1, "total_steps": 10, "loss": 1.0})
    assert (Job.objects.get(pk=job.pk).step, old_run.should_stop()) == (1, False)
    Job.objects.filter(pk=job.pk).update(owner="gpu-box-7/4026531836:99", step=5)  # the new owner's run
    old_run.progress({"step": 2, "total_steps": 10, "loss": 0.5})
    assert old_run.should_stop() is True
    old_run.finish({"status": JobStatus.CANCELLED})
    now = Job.objects.get(pk=job.pk)
    assert (now.status, now.step, now.finished_at) == (JobStatus.RUNNING, 5, None)
    assert list(MetricPoint.objects.filter(job=job).values_list("step", flat=True)) == [1]
