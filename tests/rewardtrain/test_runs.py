"""Reward runs end to end through a REAL Celery worker (Redis broker, the test PostgreSQL database)."""
from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotation.models import Sample
from annotation.services.snapshots import snapshot_create, snapshot_execute
from jobs.models import Job, JobStatus, MetricPoint
from jobs.services import job_enqueue
from rewardtrain.engine.train import latest_checkpoint
from rewardtrain.models import RewardModel, RewardRun
from rewardtrain.services import reward_run_cancel, reward_run_resume, reward_run_start
from tests.annotation.test_snapshots import annotate
from tests.conftest import wait_for
from tests.factories import make_campaign, make_user

FAST = {"max_steps": 4, "batch_size": 4, "save_every": 0, "eval_every": 0, "log_every": 1,
        "max_pixels": 56 * 56, "device": "cpu"}


def reward_snapshot(n_samples: int = 8, build: bool = True):
    """A pairwise campaign judged by one annotator (A always wins), splits fixed to 6/1/1."""
    campaign = make_campaign(n_samples=n_samples, overlap=1, criteria=["structure"])
    annotate(campaign, [make_user(f"rm-ann-{campaign.pk}", "annotator")], lambda k, i, slots: {"structure": slots[0]})
    ids = list(Sample.objects.filter(items__campaign=campaign).order_by("id").values_list("id", flat=True))
    Sample.objects.filter(pk__in=ids[:-2]).update(split="train")
    Sample.objects.filter(pk=ids[-2]).update(split="val")
    Sample.objects.filter(pk=ids[-1]).update(split="test")
    snapshot = snapshot_create(name=f"rm-{campaign.pk}", filter={"campaign_ids": [campaign.pk]}, enqueue=False)
    return snapshot_execute(snapshot.job_id) if build else snapshot


def job_of(run: RewardRun) -> Job:
    return Job.objects.get(pk=run.job_id)


def training(run: RewardRun, min_step: int) -> bool:
    """True once the run is running at ``min_step`` or later; fails at once if it ended first."""
    job = job_of(run)
    assert not job.is_finished, f"the run ended {job.status} before step {min_step}: {job.error}"
    return job.status == JobStatus.RUNNING and job.step >= min_step


def finished(run: RewardRun):
    job = job_of(run)
    return job if job.is_finished else None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_snapshot_task_then_run_succeeds_registers_model_and_scores(celery_worker_process):
    pending = reward_snapshot(build=False)
    # The snapshot build goes through the worker too (jobs.tasks.run_job on the default queue).
    job_enqueue(pending.job_id)
    wait_for(lambda: Job.objects.get(pk=pending.job_id).is_finished, timeout=120, message="snapshot job")
    pending.refresh_from_db()
    assert pending.status == JobStatus.SUCCEEDED, pending.error

    scientist = make_user("sci", "scientist")
    run = reward_run_start(snapshot=pending, overrides=FAST, user=scientist)
    job = wait_for(lambda: finished(run), timeout=120, message="the reward run")
    assert job.status == JobStatus.SUCCEEDED, job.error + (celery_worker_process.log_path.read_text()[-3000:])
    model = RewardModel.objects.get(run=run)
    assert model.snapshot_id == pending.pk and Path(model.path, "onereward.json").is_file()
    assert model.eval_split == "test" and model.eval_report["pairs"] == 1
    assert "Image fill" in model.eval_report["table"] and model.template_version
    assert job.result["reward_model_id"] == model.pk and job.step == 4 and job.progress == 1.0
    assert Path(run.config["base_model"]).name == "tiny-qwen25vl"

    client = APIClient()
    client.force_authenticate(scientist)
    detail = client.get(f"/api/reward/runs/{run.pk}/").json()
    assert detail["job"]["status"] == "succeeded" and detail["reward_model"] == model.pk
    assert any(m["kind"] == "train" and "loss" in m for m in detail["metrics"])
    body = client.get(f"/api/reward/models/{model.pk}/").json()
    assert body["lineage"]["snapshot"]["id"] == pending.pk and body["lineage"]["snapshot"]["campaigns"]

    cand = Sample.objects.filter(items__campaign__snapshots=pending).first().candidates.order_by("id")
    a, b = list(cand.values_list("id", flat=True))[:2]
    resp = client.post(f"/api/reward/models/{model.pk}/score/",
                       {"pairs": [{"first": a, "second": b, "criterion": "structure"}]}, format="json")
    assert resp.status_code == 202, resp.content
    job_id = resp.json()["job"]["id"]
    wait_for(lambda: Job.objects.get(pk=job_id).is_finished, timeout=120, message="the scoring job")
    scored = client.get(f"/api/reward/scores/{job_id}/").json()
    assert scored["job"]["status"] == "succeeded", scored["job"]["error"]
    assert 0.0 <= scored["scores"][0]["p_yes"] <= 1.0 and scored["scores"][0]["task"] == "fill"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_bad_inputs_end_failed_with_a_clear_error_and_no_model(celery_worker_process, tmp_path, settings):
    settings.MODEL_ROOTS = [str(tmp_path)]  # under a model root, so the start accepts it and the worker fails it
    snapshot = reward_snapshot()
    missing = reward_run_start(snapshot=snapshot, base_model=str(tmp_path / "no-such-model"), overrides=FAST)
    job = wait_for(lambda: finished(missing), timeout=90, message="the failing run")
    assert job.status == JobStatus.FAILED and "base model folder not found" in job.error
    # An unreadable image inside the snapshot: the engine refuses it before training.
    image = next(Path(snapshot.path, "images").iterdir())
    image.write_bytes(b"not a png")
    broken = reward_run_start(snapshot=snapshot, overrides=FAST)
    job = wait_for(lambda: finished(broken), timeout=90, message="the broken-snapshot run")
    assert job.status == JobStatus.FAILED and "image" in job.error.lower(), job.error
    assert not RewardModel.objects.exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_cancel_a_running_job_then_resume_finishes_it(celery_worker_process):
    snapshot = reward_snapshot()
    # Long enough (a few seconds even on a fast machine) that the cancel lands mid-run.
    run = reward_run_start(snapshot=snapshot, overrides={**FAST, "max_steps": 400, "batch_size": 2})
    wait_for(lambda: training(run, 2), timeout=150, interval=0.05, message="the run to be training")
    reward_run_cancel(run=run)
    job = wait_for(lambda: finished(run), timeout=120, message="the cancellation")
    assert job.status == JobStatus.CANCELLED and job.step < 400
    assert not RewardModel.objects.exists()
    assert any(Path(run.output_dir, "checkpoints").iterdir())
    reward_run_resume(run=run)
    job = wait_for(lambda: finished(run), timeout=240, message="the resumed run")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 2 and job.result["train"]["resumed_from_step"] > 0
    assert RewardModel.objects.filter(run=run).exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_leaves_a_failed_resumable_run_and_no_half_registered_model(celery_worker_process):
    """SIGKILL the worker mid-run: its replacement marks the run failed ("worker lost"); resume
    continues from the last checkpoint and registers exactly one model."""
    import time

    snapshot = reward_snapshot()
    # The tiny run is fast (200 steps took 4-17 s), and the job row's step is written at most
    # every 0.5 s: so kill on the first checkpoint on disk, in a run long enough to still be going.
    run = reward_run_start(snapshot=snapshot, overrides={**FAST, "max_steps": 120, "batch_size": 2, "save_every": 2})
    wait_for(lambda: training(run, 0) and latest_checkpoint(run.output_dir) is not None, timeout=150, interval=0.05,
             message="the run's first checkpoint")
    celery_worker_process.kill()
    assert job_of(run).status == JobStatus.RUNNING  # nobody knows yet
    time.sleep(4)  # past JOB_STALE_AFTER_SECONDS=3 for the test workers
    celery_worker_process.start()  # a new worker cleans up after the dead one
    job = wait_for(lambda: finished(run), timeout=90, message="the lost run to be marked failed")
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("Worker lost")
    assert not RewardModel.objects.exists()
    reward_run_resume(run=run)
    job = wait_for(lambda: finished(run), timeout=300, message="the resumed run")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["train"]["resumed_from_step"] >= 2
    assert RewardModel.objects.filter(run=run).count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_training_run_outlives_a_database_restart(celery_worker_process, database_outage):
    """Cut every database connection mid-run and refuse new ones for a while, as a PostgreSQL
    restart does: the worker's run keeps training, catches its progress up and registers its model
    in the same attempt."""
    snapshot = reward_snapshot()
    run = reward_run_start(snapshot=snapshot, overrides={**FAST, "max_steps": 400, "batch_size": 2})
    wait_for(lambda: training(run, 2), timeout=150, interval=0.05, message="the run to be training")
    database_outage.lasting(2.5)
    job = wait_for(lambda: finished(run), timeout=240, message="the run after the outage")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 1 and job.step == 400
    assert "database unreachable" in job.log_tail and "progress caught up" in job.log_tail
    assert RewardModel.objects.filter(run=run).count() == 1
    steps = list(MetricPoint.objects.filter(job=job, kind="train").order_by("id").values_list("step", flat=True))
    assert steps == sorted(steps) and steps[-1] == 400  # nothing out of order or missing at the end
