"""The shared job life cycle: idempotent start, failure capture, cancel, resume, stale takeover."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import Conflict
from jobs.models import Job, JobStatus, MetricPoint
from jobs.selectors import job_metric_series
from jobs.services import (
    JobCancelled,
    JobReporter,
    job_cancel,
    job_claim,
    job_create,
    job_execute,
    job_requeue_for_resume,
)

pytestmark = pytest.mark.django_db


def new_job(**kw) -> Job:
    return job_create(kind="reward", name="t", config=kw or {"x": 1})


def test_claim_is_idempotent_a_redelivered_message_does_not_start_twice():
    job = new_job()
    assert job_claim(job.pk).status == JobStatus.RUNNING
    assert job_claim(job.pk) is None
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_execute_records_success_and_failure_with_traceback():
    ok = job_execute(new_job().pk, lambda job, rep: {"answer": 42})
    assert (ok.status, ok.result, ok.progress) == (JobStatus.SUCCEEDED, {"answer": 42}, 1.0)

    def broken(job, rep):
        raise ValueError("snapshot has no pairs")

    failed = job_execute(new_job().pk, broken)
    assert failed.status == JobStatus.FAILED
    assert failed.error == "ValueError: snapshot has no pairs"
    assert "Traceback" in failed.traceback
    assert failed.finished_at is not None


def test_cancel_a_queued_job_at_once_and_a_running_one_through_should_stop():
    queued = job_cancel(job=new_job())
    assert queued.status == JobStatus.CANCELLED
    with pytest.raises(Conflict):
        job_cancel(job=queued)

    job = new_job()
    polls = []

    def body(j, rep: JobReporter):
        rep.min_interval = 0
        job_cancel(job=j)  # as if a user clicked cancel mid-run
        polls.append(rep.should_stop())
        if polls[-1]:
            raise JobCancelled
        return {}

    assert job_execute(job.pk, body).status == JobStatus.CANCELLED
    assert polls == [True]


def test_resume_requeues_failed_or_cancelled_with_the_resume_flag():
    job = job_execute(new_job().pk, lambda j, r: (_ for _ in ()).throw(RuntimeError("boom")))
    resumed = job_requeue_for_resume(job=job)
    assert (resumed.status, resumed.config["resume"]) == (JobStatus.QUEUED, True)
    assert job_execute(resumed.pk, lambda j, r: {"resumed": j.config["resume"]}).result == {"resumed": True}
    with pytest.raises(Conflict):
        job_requeue_for_resume(job=resumed)  # succeeded jobs cannot be resumed


def test_a_running_job_with_a_stale_heartbeat_is_taken_over_on_redelivery():
    job = new_job()
    job_claim(job.pk)
    assert job_claim(job.pk) is None  # fresh heartbeat: still owned by its worker
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    taken = job_claim(job.pk)
    assert taken is not None
    assert taken.attempts == 2
    assert taken.config["resume"] is True


def test_reporter_throttles_train_points_but_keeps_evals_and_the_last_step():
    job = job_claim(new_job().pk)
    rep = JobReporter(job, min_interval=3600)
    for step in range(1, 11):
        rep.progress({"step": step, "total_steps": 10, "kind": "train", "loss": 1 / step})
    rep.progress({"step": 5, "total_steps": 10, "kind": "eval", "accuracy": 0.8})
    kinds = list(MetricPoint.objects.filter(job=job).values_list("kind", "step"))
    assert kinds == [("train", 1), ("train", 10), ("eval", 5)]
    job.refresh_from_db()
    assert job.progress == 1.0  # eval points never move the bar back
    series = job_metric_series(job)
    assert series[1]["loss"] == pytest.approx(0.1)
    assert job_metric_series(job, after_id=series[1]["id"])[0]["kind"] == "eval"


def test_the_log_tail_tells_the_story_of_a_run():
    def body(job, rep):
        rep.progress({"step": 1, "total_steps": 2, "kind": "train", "loss": 0.5})
        raise RuntimeError("disk full")

    job = job_execute(new_job().pk, body)
    lines = job.log_tail.splitlines()
    assert "started (attempt 1)" in lines[0]
    assert "train step 1/2 loss=0.5" in lines[1]
    assert lines[-1].endswith("failed: RuntimeError: disk full")


def test_fail_stale_marks_only_jobs_without_a_recent_heartbeat(settings):
    from jobs.services import job_fail_stale

    settings.JOB_STALE_AFTER_SECONDS = 60
    fresh, lost = job_claim(new_job().pk), job_claim(new_job().pk)
    Job.objects.filter(pk=lost.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert job_fail_stale() == 1
    fresh.refresh_from_db()
    lost.refresh_from_db()
    assert fresh.status == JobStatus.RUNNING
    assert lost.status == JobStatus.FAILED
    assert lost.error.startswith("Worker lost")
    assert job_requeue_for_resume(job=lost).status == JobStatus.QUEUED
