"""The reward app's job kinds (jobs.registry). Training, scoring and evaluation load torch models
and go to the `gpu` role; the baseline learner trains in CPU minutes and must not wait behind a
GPU run, so it stays on `default`."""
from jobs.registry import JobType, register

register(JobType(kind="reward", execute="rewardtrain.services.reward_run_execute", role="gpu", torch=True,
                 processes="rewardtrain.services.reward_run_processes", resumable=True,
                 resume_check="rewardtrain.services.reward_run_resume_check"))
register(JobType(kind="score", execute="rewardtrain.services.reward_score_execute", role="gpu", torch=True))
register(JobType(kind="evaluation", execute="rewardtrain.services.reward_evaluation_execute", role="gpu",
                 torch=True))
register(JobType(kind="baseline", execute="rewardtrain.services.baseline_execute", torch=True))
