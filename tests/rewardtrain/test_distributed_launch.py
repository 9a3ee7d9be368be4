"""A reward run with processes=2 trains under torchrun (gloo on CPU) launched by the job body,
with metrics streamed into the job and cancellation through the engine's stop file."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobs.models import JobStatus, MetricPoint
from rewardtrain.models import RewardModel
from rewardtrain.services import reward_run_execute_job, reward_run_start
from tests.conftest import cancel_once_training
from tests.rewardtrain.test_runs import FAST, reward_snapshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]  # torchrun launches


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

    canceller = cancel_once_training(run.output_dir, run.job_id, timeout=120)
    job = reward_run_execute_job(run.job_id)
    canceller.join()
    assert job.status == JobStatus.CANCELLED
    assert job.step < 400
    assert any(Path(run.output_dir, "checkpoints").glob("step-*"))
    assert not RewardModel.objects.exists()
