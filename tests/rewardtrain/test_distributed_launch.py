"""A reward run with processes=2 trains under torchrun (gloo on CPU) launched by the job body,
with metrics streamed into the job and cancellation through the engine's stop file."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from jobs.models import Job, JobStatus, MetricPoint
from jobs.services import job_cancel
from rewardtrain.models import RewardModel
from rewardtrain.services import reward_run_execute_job, reward_run_start
from tests.conftest import wait_for
from tests.rewardtrain.test_runs import FAST, reward_snapshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("parallelism", ["ddp", "fsdp"])
def test_two_process_run_succeeds_streams_metrics_and_registers_the_model(parallelism):
    run = reward_run_start(snapshot=reward_snapshot(), overrides={**FAST, "parallelism": parallelism}, processes=2,
                           enqueue=False)
    job = reward_run_execute_job(run.job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (job.result["train"]["world_size"], job.result["train"]["parallelism"]) == (2, parallelism)
    steps = set(MetricPoint.objects.filter(job=job, kind="train").values_list("step", flat=True))
    assert {1, FAST["max_steps"]} <= steps  # first and last points always reach the dashboard
    assert RewardModel.objects.filter(run=run).count() == 1
    assert "launching 2 processes" in job.log_tail


def test_cancelling_a_distributed_run_stops_every_rank_with_a_checkpoint():
    run = reward_run_start(snapshot=reward_snapshot(), processes=2, enqueue=False,
                           overrides={**FAST, "max_steps": 400, "batch_size": 2, "save_every": 2})

    def cancel_when_training():
        from django.db import connection

        wait_for(lambda: Path(run.output_dir, "metrics.jsonl").exists(), timeout=120, message="training to start")
        job_cancel(job=Job.objects.get(pk=run.job_id))
        connection.close()  # this thread's own connection, or the test database cannot be dropped

    canceller = threading.Thread(target=cancel_when_training)
    canceller.start()
    job = reward_run_execute_job(run.job_id)
    canceller.join()
    assert job.status == JobStatus.CANCELLED
    assert job.step < 400
    assert any(Path(run.output_dir, "checkpoints").glob("step-*"))
    assert not RewardModel.objects.exists()
