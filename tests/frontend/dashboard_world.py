"""A small, fully built dashboard world without training anything: two reward runs with logged
curves and one evaluated reward model, an RL run with a checkpoint, a judged A-versus-B campaign
and its snapshot. Shared by the dashboard experiment tests and the accessibility check."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotation.models import Campaign, DatasetSnapshot
from jobs.models import Job, JobKind, JobStatus, MetricPoint
from jobs.services import job_create
from policytrain.models import PolicyCheckpoint, PolicyRun
from rewardtrain.models import RewardModel, RewardRun

# 82 % of 412 test pairs on fill × structure, 100 % of 4 on removal (the "100.0 on 4 pairs" case).
EVAL_REPORT = {
    "split": "test", "pairs": 416, "overall_accuracy": (338 + 4) / 416,
    "accuracy": {"fill": {"structure": 338 / 412}, "removal": {"removal_quality": 1.0}},
    "counts": {"fill": {"structure": 412}, "removal": {"removal_quality": 4}},
    "human_ceiling": {"fill": {"structure": 0.8}},
}


@dataclass
class World:
    baseline: Job
    wide: Job
    policy: Job
    model: RewardModel
    checkpoint: PolicyCheckpoint
    campaign: Campaign
    snapshot: DatasetSnapshot


def reward_job(name: str, snapshot: DatasetSnapshot, *, lr: float, losses: list[float], run_dir: Path,
               tags: list[str]) -> Job:
    job = job_create(kind=JobKind.REWARD, name=name, config={})
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, step=len(losses) * 10, total_steps=len(losses) * 10,
                                         progress=1.0)
    RewardRun.objects.create(job=job, snapshot=snapshot, base_model="tiny", preset="tiny", output_dir=str(run_dir),
                             config={"lr": lr, "batch_size": 4, "max_steps": len(losses) * 10, "seed": 0}, tags=tags)
    MetricPoint.objects.bulk_create([MetricPoint(job=job, step=(k + 1) * 10, kind="train", values={"loss": v, "accuracy": 0.5 + k / 20})
                                     for k, v in enumerate(losses)])
    MetricPoint.objects.create(job=job, step=len(losses) * 10, kind="eval", values={"loss": losses[-1] * 1.1, "split": "val"})
    return job


def build_world(tmp_path: Path) -> World:
    from tests.frontend.test_dashboard import judged_campaign

    campaign = judged_campaign()
    snapshot = DatasetSnapshot.objects.get(campaigns=campaign)
    baseline = reward_job("rm baseline", snapshot, lr=1e-4, losses=[0.69, 0.61, 0.52, 0.47, 0.41], run_dir=tmp_path / "rm1",
                          tags=["baseline"])
    wide = reward_job("rm wide lr", snapshot, lr=3e-4, losses=[0.69, 0.55, 0.40, 0.33, 0.30], run_dir=tmp_path / "rm2",
                      tags=["sweep", "lr"])
    model = RewardModel.objects.create(run=baseline.reward_run, name="rm-baseline", path=str(tmp_path / "rm1" / "final"),
                                       base_model="tiny", template_version="onereward-query-v2", snapshot=snapshot,
                                       eval_split="test", eval_report=EVAL_REPORT)
    policy = job_create(kind=JobKind.POLICY, name="rl alg2", config={})
    Job.objects.filter(pk=policy.pk).update(status=JobStatus.SUCCEEDED, progress=1.0)
    run = PolicyRun.objects.create(job=policy, reward_model=model, algorithm=2, output_dir=str(tmp_path / "rl"),
                                   config={"learning_rate": 1e-5, "batch_size": 2, "max_steps": 40, "hinge_lambda": 0.9,
                                           "ema_decay": 0.99})
    MetricPoint.objects.bulk_create([MetricPoint(job=policy, step=s, kind="train", values={"loss": 1.0 / s}) for s in (10, 20, 30, 40)])
    checkpoint = PolicyCheckpoint.objects.create(name="rl-alg2", base_policy="tiny", weights_dir=str(tmp_path / "w"), run=run,
                                                 reward_model=model, algorithm=2)
    return World(baseline=Job.objects.get(pk=baseline.pk), wide=Job.objects.get(pk=wide.pk), policy=Job.objects.get(pk=policy.pk),
                 model=model, checkpoint=checkpoint, campaign=campaign, snapshot=snapshot)
