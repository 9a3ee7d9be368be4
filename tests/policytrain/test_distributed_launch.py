"""A policy run with processes=2 trains under torchrun (gloo on CPU), launched by the job body;
cancelling it stops every rank at the same step with a checkpoint."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from jobs.models import Job, JobStatus, MetricPoint
from jobs.services import job_cancel
from policytrain.models import PolicyCheckpoint
from policytrain.services import policy_run_start
from tests.conftest import wait_for
from tests.policytrain.test_policy_runs import FAST, execute, make_reward_model, make_samples

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_process_policy_run_succeeds_and_registers_a_checkpoint(tiny_reward_dir, tiny_base):
    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill", n=2)
    run = policy_run_start(reward_model=rm, overrides={**FAST, "batch_size": 2}, processes=2, enqueue=False)
    job = execute(run.job)
    assert job.status == JobStatus.SUCCEEDED, job.error + Path(run.output_dir + ".log").read_text()[-2000:]
    assert MetricPoint.objects.filter(job=job, kind="train").exists()
    assert PolicyCheckpoint.objects.filter(run=run).count() == 1
    assert "launching 2 processes" in job.log_tail


def test_cancelling_a_two_process_policy_run(tiny_reward_dir, tiny_base):
    rm = make_reward_model(tiny_reward_dir, name="rm-cancel")
    make_samples("fill", n=2, prefix="c")
    run = policy_run_start(reward_model=rm, overrides={**FAST, "batch_size": 2, "max_steps": 500,
                                                       "sample_grid_every": 0},
                           processes=2, enqueue=False)

    def cancel_when_training():
        from django.db import connection

        wait_for(lambda: Path(run.output_dir, "metrics.jsonl").exists(), timeout=180, message="training to start")
        job_cancel(job=Job.objects.get(pk=run.job_id))
        connection.close()  # this thread's own connection, or the test database cannot be dropped

    canceller = threading.Thread(target=cancel_when_training)
    canceller.start()
    job = execute(run.job)
    canceller.join()
    assert job.status == JobStatus.CANCELLED, job.error
    assert job.step < 500
    assert any(Path(run.output_dir, "checkpoints").glob("step-*"))
    assert not PolicyCheckpoint.objects.exists()
