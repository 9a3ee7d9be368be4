"""A database restart or failover under a running job: the run goes on, nothing is lost.

``database_outage`` cuts every connection to the test database and refuses new ones, as a
PostgreSQL restart does, without touching the server the rest of the suite uses.
"""
from __future__ import annotations

import time

import pytest
from django.db import OperationalError

from jobs.models import Job, JobStatus, MetricPoint
from jobs.services import job_create, job_execute

pytestmark = pytest.mark.django_db(transaction=True)


def new_job() -> Job:
    return job_create(kind="reward", name="outage", config={})


def test_a_run_goes_on_through_an_outage_and_its_progress_catches_up(database_outage):
    def body(job, rep):
        rep.min_interval = 0  # write every step
        rep.progress({"step": 1, "total_steps": 4, "loss": 1.0})
        database_outage.start()
        rep.progress({"step": 2, "total_steps": 4, "loss": 0.5})  # kept in memory
        stop = rep.should_stop()  # cannot ask: the run is not stopped for it
        database_outage.end()
        rep.progress({"step": 3, "total_steps": 4, "loss": 0.25})  # writes 2 and 3
        return {"stopped": stop}

    job = job_execute(new_job().pk, body)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result == {"stopped": False} and job.step == 3
    points = list(MetricPoint.objects.filter(job=job).order_by("id").values_list("step", "values__loss"))
    assert points == [(1, 1.0), (2, 0.5), (3, 0.25)]
    assert "database unreachable (OperationalError)" in job.log_tail
    assert "progress caught up" in job.log_tail


def test_the_outcome_waits_for_the_database_to_come_back(database_outage, settings):
    settings.JOB_DB_OUTAGE_SECONDS = 60

    def body(job, rep):
        rep.progress({"step": 2, "total_steps": 2, "loss": 0.1})
        database_outage.start()
        database_outage.end_after(1.5)
        return {"answer": 42}

    started = time.monotonic()
    job = job_execute(new_job().pk, body)
    assert time.monotonic() - started >= 1.4  # it really waited for the database
    assert (job.status, job.result, job.progress) == (JobStatus.SUCCEEDED, {"answer": 42}, 1.0)
    assert job.finished_at is not None
    assert MetricPoint.objects.filter(job=job).count() == 1


def test_an_outage_longer_than_the_patience_leaves_the_job_running_for_the_reaper(database_outage, settings):
    """Nothing half-written: the job stays "running" without heartbeats, so the stale-job reaper
    marks it failed (resumable) once the database is back."""
    settings.JOB_DB_OUTAGE_SECONDS = 1
    job = new_job()

    def body(job, rep):
        database_outage.start()
        return {"answer": 42}

    with pytest.raises(OperationalError):
        job_execute(job.pk, body)
    database_outage.end()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.result == {} and job.finished_at is None


def test_a_job_whose_message_arrives_during_an_outage_waits_for_the_database(database_outage, settings):
    """A failed claim would ack the message and leave the job queued with nothing to run it."""
    settings.JOB_DB_OUTAGE_SECONDS = 60
    job = new_job()
    database_outage.start()
    database_outage.end_after(1.5)
    done = job_execute(job.pk, lambda job, rep: {"ran": True})
    assert (done.status, done.result, done.attempts) == (JobStatus.SUCCEEDED, {"ran": True}, 1)
