"""A real worker loses its pool process mid-job, and a job is started while the broker is down:
both end up run to the end by a real worker, without anyone running ``reap_stale_jobs``."""
from __future__ import annotations

import os
import signal
import socket
import time
from contextlib import contextmanager

import psutil
import pytest
import redis
from django.utils import timezone
from rest_framework.test import APIClient

import tests.jobs.worker_tasks  # noqa: F401 - registers the "count" job kind
from jobs.models import Job, JobStatus
from jobs.services import BROKER_DOWN_MESSAGE, RUN_JOB_TASK, job_create, job_enqueue
from tests.conftest import wait_for
from tests.factories import make_user

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

#: The prefork worker notices a dead pool process at its next pool check (every 5 s), and only
#: then requeues the message: 3-5 s. Past the suite's usual 3 s stale limit, any takeover would
#: come from a stale heartbeat, which the code before owners already did; with this limit a
#: takeover within a few seconds can only come from the dead owner.
STALE_LIMIT = 30.0
PREFORK = {"args": ("--pool", "prefork", "--concurrency", "1", "-I", "tests.jobs.worker_tasks"),
           "env": {"JOB_STALE_AFTER_SECONDS": str(int(STALE_LIMIT))}}


@pytest.mark.parametrize("celery_worker_process", [PREFORK], indirect=True)
def test_a_killed_pool_process_is_taken_over_by_the_redelivered_message(celery_worker_process):
    job = job_create(kind="count", name="count", config={"steps": 30, "pause": 0.25})
    assert job_enqueue(job) is True
    running = wait_for(lambda: (j := Job.objects.get(pk=job.pk)).step >= 4 and j, timeout=30,
                       message="the job to be a few steps in")
    owner_pid = int(running.owner.rpartition(":")[2])
    # The owner is the worker's pool process, not the worker itself: the worker lives on.
    assert owner_pid in {p.pid for p in psutil.Process(celery_worker_process.proc.pid).children()}
    os.kill(owner_pid, signal.SIGKILL)
    killed_at = timezone.now()

    taken = wait_for(lambda: (j := Job.objects.get(pk=job.pk)).attempts == 2 and j, timeout=20,
                     message="the redelivered message to take the job over")
    takeover_after = (taken.started_at - killed_at).total_seconds()
    assert takeover_after < STALE_LIMIT / 3  # by the dead owner, long before its heartbeat is stale
    assert taken.owner != running.owner and taken.status == JobStatus.RUNNING

    done = wait_for(lambda: (j := Job.objects.get(pk=job.pk)).is_finished and j, timeout=30,
                    message="the taken-over job to finish")
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 2 and done.error == ""
    assert done.result["resumed_from"] >= 4 and done.result["pid"] != owner_pid  # resumed, not restarted
    assert f"taking over: previous owner {running.owner} died" in done.log_tail
    assert celery_worker_process.proc.poll() is None
    print(f"takeover {takeover_after:.2f} s after the kill (stale limit {STALE_LIMIT:.0f} s)")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def broker_unreachable():
    """This process's Celery app sends to a port nothing listens on, as when Redis is stopped."""
    from config.celery_app import app

    saved = app.conf.broker_url, app.conf.broker_write_url
    app.conf.broker_url = app.conf.broker_write_url = f"redis://127.0.0.1:{_closed_port()}/0"
    app.amqp._producer_pool = app._pool = None  # the pools hold connections to the real broker
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.broker_write_url = saved
        app.amqp._producer_pool = app._pool = None


def test_a_job_started_while_the_broker_is_down_is_sent_when_a_worker_starts(celery_worker_process):
    from config.celery_app import app

    client = APIClient()
    client.force_authenticate(make_user("sci", "scientist"))
    with broker_unreachable():
        response = client.post("/api/exports/jobs/", {"format": "jsonl", "campaign_ids": []}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["error"]) == ("queued", BROKER_DOWN_MESSAGE)
    job = Job.objects.get(pk=body["id"])
    assert (job.enqueued_at, job.task_name) == (None, RUN_JOB_TASK)
    time.sleep(2)  # the running worker has no message for it
    assert redis.Redis.from_url(app.conf.broker_url).llen("default") == 0
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED

    celery_worker_process.stop()
    celery_worker_process.start()  # the broker is back: the starting worker sends it
    done = wait_for(lambda: (j := Job.objects.get(pk=job.pk)).is_finished and j, timeout=30,
                    message="the swept job to run")
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.enqueued_at is not None and done.error == "" and done.attempts == 1
    assert "sent 1 queued job(s)" in celery_worker_process.log_path.read_text()
    assert client.get(body["url"]).json()["status"] == "succeeded"


def test_a_message_for_a_job_owned_on_another_host_comes_back_and_takes_over_once_it_is_stale(
        celery_worker_process):
    from annotation.services.exports import export_start
    from jobs.services import job_claim

    job = export_start(fmt="jsonl", campaign_ids=None, enqueue=False)
    job_claim(job.pk)
    # Claimed by a worker on another machine, which then vanished: this host cannot check its pid.
    Job.objects.filter(pk=job.pk).update(owner="gpu-box-7/4026531836:4242", heartbeat_at=timezone.now())
    sent_at = timezone.now()
    job_enqueue(job.pk)  # the message its worker held, requeued
    done = wait_for(lambda: (j := Job.objects.get(pk=job.pk)).is_finished and j, timeout=30,
                    message="the job to be taken over once stale")
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 2 and "taking over: no heartbeat from gpu-box-7/4026531836:4242" in done.log_tail
    # Not before the heartbeat was stale: the first delivery was not dropped, it was sent again later.
    assert (done.started_at - sent_at).total_seconds() > 3
    assert "delivering again in" in celery_worker_process.log_path.read_text()
