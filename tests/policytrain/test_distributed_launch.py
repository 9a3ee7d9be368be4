"""A policy run with processes=2 trains under torchrun (gloo on CPU), launched by the job body;
cancelling it stops every rank at the same step with a checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobs.models import JobStatus, MetricPoint
from policytrain.models import PolicyCheckpoint
from policytrain.selectors import RL_WINDOW_KIND, run_sample_grids
from policytrain.services import policy_run_start
from tests.conftest import cancel_once_training
from tests.policytrain.test_policy_runs import FAST, execute, make_reward_model, make_samples

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]  # torchrun launches


def test_two_process_policy_run_succeeds_and_registers_a_checkpoint(tiny_reward_dir, tiny_base):
    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill", n=2)
    run = policy_run_start(reward_model=rm, overrides={**FAST, "batch_size": 2}, processes=2, enqueue=False)
    job = execute(run.job)
    assert job.status == JobStatus.SUCCEEDED, job.error + Path(run.output_dir + ".log").read_text()[-2000:]
    assert MetricPoint.objects.filter(job=job, kind="train").exists()
    # The run pages' windows and grids are recorded from the ranks' files as under one process.
    assert sorted(MetricPoint.objects.filter(job=job, kind=RL_WINDOW_KIND).values_list("step", flat=True)) == [1, 2, 3]
    assert [g["name"] for g in run_sample_grids(run)] == ["step-000001", "step-000002", "step-000003"]
    assert PolicyCheckpoint.objects.filter(run=run).count() == 1
    assert "launching 2 processes" in job.log_tail


def test_cancelling_a_two_process_policy_run(tiny_reward_dir, tiny_base):
    rm = make_reward_model(tiny_reward_dir, name="rm-cancel")
    make_samples("fill", n=2, prefix="c")
    run = policy_run_start(reward_model=rm, overrides={**FAST, "batch_size": 2, "max_steps": 500,
                                                       "sample_grid_every": 0},
                           processes=2, enqueue=False)

    canceller = cancel_once_training(run.output_dir, run.job_id, timeout=180)
    job = execute(run.job)
    canceller.join()
    assert job.status == JobStatus.CANCELLED, job.error
    assert job.step < 500
    assert any(Path(run.output_dir, "checkpoints").glob("step-*"))
    assert not PolicyCheckpoint.objects.exists()
