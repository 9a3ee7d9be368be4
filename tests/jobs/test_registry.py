"""One job pattern (ADR 0014): the registry of job kinds, the one task that runs any job, the
queue each kind is sent to, a worker refusing a job its devices cannot run, and a snapshot whose
status is its job's."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from rest_framework.test import APIClient

import tests.jobs.worker_tasks  # noqa: F401 - registers the "count" and "needs-cuda" job kinds
from annotation.services.snapshots import snapshot_create
from core.errors import Conflict
from jobs.models import Job, JobKind, JobStatus
from jobs.registry import JobType, UnknownJobKind, job_queues, job_type, register
from jobs.services import (
    RUN_JOB_TASK,
    cuda_devices_here,
    job_create,
    job_enqueue,
    job_resume,
    job_run,
    job_start,
)
from jobs.tasks import LEGACY_TASK_NAMES
from tests.conftest import wait_for
from tests.factories import make_user

REPO = Path(__file__).resolve().parents[2]


def test_every_job_kind_is_registered_with_a_body_that_imports():
    assert set(JobKind.values) <= set(job_queues())
    for kind in JobKind.values:
        declared = job_type(kind)
        assert callable(declared.hook("execute")), kind
        for hook in ("processes", "finished", "resume_check"):
            assert getattr(declared, hook) == "" or callable(declared.hook(hook)), (kind, hook)
    # Roles as operators start workers for them: CPU minutes on default, torch models on gpu.
    queues = {kind: job_type(kind).queue for kind in JobKind.values}
    assert {k for k, q in queues.items() if q == "default"} == {"snapshot", "export", "import", "baseline"}
    assert {k for k, q in queues.items() if q == "gpu"} == {"reward", "score", "evaluation", "policy", "generation"}


def test_a_kind_is_registered_once():
    again = job_type("count")
    assert register(again) is again  # the same declaration (a module imported twice) is harmless
    with pytest.raises(ValueError, match="registered twice"):
        register(JobType(kind="count", execute="tests.jobs.worker_tasks.processes"))


@pytest.mark.django_db
def test_an_unknown_kind_is_refused_at_start_and_fails_a_job_that_has_one():
    with pytest.raises(UnknownJobKind, match=r"no job type is registered for kind 'trian' \(registered: .*reward"):
        job_start(kind="trian", name="typo", config={})
    assert not Job.objects.exists()
    orphan = job_create(kind="retired", name="kind of an app that left", config={})
    done = job_run(orphan.pk)
    assert done.status == JobStatus.FAILED and done.finished_at is not None
    assert done.error.startswith("UnknownJobKind: no job type is registered for kind 'retired'")


@pytest.mark.django_db
def test_a_kind_goes_to_the_queue_settings_name_for_it(settings):
    settings.JOB_QUEUES = {"policy": "gpu-h200"}
    settings.JOB_GPU_QUEUE = "gpu-a100"
    assert (job_type("policy").queue, job_type("reward").queue, job_type("snapshot").queue) == (
        "gpu-h200", "gpu-a100", "default")
    from config.celery_app import app

    client = redis.Redis.from_url(app.conf.broker_url)
    client.delete("gpu-h200")
    try:
        job = job_create(kind="policy", name="big", config={})
        assert job_enqueue(job) is True
        (raw,) = client.lrange("gpu-h200", 0, -1)  # the real broker holds it in that queue only
        message = json.loads(raw)
        assert message["headers"]["task"] == RUN_JOB_TASK
        assert json.loads(base64.b64decode(message["body"]))[0] == [job.pk]
        assert Job.objects.get(pk=job.pk).task_name == RUN_JOB_TASK
    finally:
        client.delete("gpu-h200")


def test_queues_are_read_from_the_environment():
    code = ("import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.test_settings');"
            "django.setup(); from django.conf import settings; from jobs.registry import job_queues;"
            "print(settings.JOB_QUEUES, job_queues()['policy'], job_queues()['reward'])")
    env = {**os.environ, "DJANGO_READ_DOT_ENV_FILE": "false", "JOB_QUEUES": "policy=gpu-h200, generation = gpu-h200",
           "CELERY_GPU_QUEUE": "gpu-big"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == "{'policy': 'gpu-h200', 'generation': 'gpu-h200'} gpu-h200 gpu-big"


@pytest.mark.django_db
def test_a_worker_without_the_cuda_devices_a_job_needs_refuses_it_with_the_reason():
    have = cuda_devices_here()
    job = job_create(kind="needs-cuda", name="ddp", config={"device": "cuda", "processes": have + 2, "steps": 1})
    done = job_run(job.pk, queue="gpu")
    assert done.status == JobStatus.FAILED and done.step == 0  # refused before the body ran
    assert done.error == f"DeviceUnavailable: this worker has {have} CUDA device{'s' if have != 1 else ''}; " \
                         f"job needs {have + 2} (queue gpu)"
    # A CPU (or "auto") job of the same kind runs anywhere.
    cpu = job_create(kind="needs-cuda", name="cpu", config={"device": "auto", "processes": 4, "steps": 1,
                                                          "pause": 0})
    assert job_run(cpu.pk).status == JobStatus.SUCCEEDED


def refuse(job: Job) -> None:
    raise Conflict(f"job {job.pk} may not resume")


register(JobType(kind="count-once", execute="tests.jobs.worker_tasks.count_slowly", resumable=True,
                 resume_check="tests.jobs.test_registry.refuse"))


def _ended(kind: str, status: str = JobStatus.FAILED) -> Job:
    job = job_create(kind=kind, name=kind, config={})
    Job.objects.filter(pk=job.pk).update(status=status)
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_only_resumable_kinds_resume_and_their_check_can_refuse(monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("jobs.services.job_enqueue", sent.append)
    with pytest.raises(Conflict, match="Judgment export jobs cannot be resumed; start a new one"):
        job_resume(job=_ended("export"))
    once = _ended("count-once")
    with pytest.raises(Conflict, match=f"job {once.pk} may not resume"):
        job_resume(job=once)
    assert Job.objects.get(pk=once.pk).status == JobStatus.FAILED and sent == []
    policy = _ended("policy", JobStatus.CANCELLED)
    with django_capture_on_commit_callbacks(execute=True):
        resumed = job_resume(job=policy)
    assert (resumed.status, resumed.config["resume"]) == (JobStatus.QUEUED, True)
    assert [j.pk for j in sent] == [policy.pk]


@pytest.mark.django_db
def test_a_snapshot_shows_its_jobs_status_and_error(django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("jobs.services.job_enqueue", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        snapshot = snapshot_create(name="from nothing")
    assert [j.pk for j in sent] == [snapshot.job_id]  # sent after commit, by job_start
    assert (snapshot.status, snapshot.error) == ("queued", "")
    client = APIClient()
    client.force_authenticate(make_user("sci", "scientist"))
    Job.objects.filter(pk=snapshot.job_id).update(status=JobStatus.FAILED, error="SnapshotEmpty: no pairs")
    body = client.get(f"/api/snapshots/{snapshot.pk}/").json()
    assert (body["status"], body["error"], body["job"]["status"]) == ("failed", "SnapshotEmpty: no pairs", "failed")
    assert client.get("/api/snapshots/").json()[0]["status"] == "failed"
    snapshot.refresh_from_db()
    assert snapshot.status == "failed"
    # The job row gone (admin clean-up): built is what its folder says.
    Job.objects.filter(pk=snapshot.job_id).delete()
    snapshot.refresh_from_db()
    assert (snapshot.status, snapshot.error) == ("failed", "")


WORKER = {"args": ("--pool", "solo", "-I", "tests.jobs.worker_tasks")}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("celery_worker_process", [WORKER], indirect=True)
def test_a_real_worker_runs_any_kind_refuses_what_its_devices_cannot_and_honours_old_task_names(
        celery_worker_process):
    from config.celery_app import app

    counted = job_start(kind="count", name="count", config={"steps": 3, "pause": 0.05})
    refused = job_start(kind="needs-cuda", name="ddp", config={"device": "cuda", "processes": 64, "steps": 1})
    # A message sent by the release before the registry, still in the broker at the upgrade.
    legacy = job_create(kind="export", name="old message", config={"format": "jsonl", "campaign_ids": []})
    app.send_task("annotation.tasks.export_task", args=[legacy.pk], queue="default")
    for job in (counted, refused, legacy):
        wait_for(lambda j=job: Job.objects.get(pk=j.pk).is_finished, timeout=60, message=f"job {job.name}")
    assert Job.objects.get(pk=counted.pk).status == JobStatus.SUCCEEDED
    refused = Job.objects.get(pk=refused.pk)
    assert refused.status == JobStatus.FAILED
    assert refused.error.startswith("DeviceUnavailable: this worker has ")
    assert refused.error.endswith("; job needs 64 (queue gpu)")  # the queue it was taken from
    assert Job.objects.get(pk=legacy.pk).status == JobStatus.SUCCEEDED
    assert set(LEGACY_TASK_NAMES) <= set(app.tasks)
