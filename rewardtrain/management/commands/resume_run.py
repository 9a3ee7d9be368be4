from ...services import reward_run_resume
from ._run_action import RunActionCommand


class Command(RunActionCommand):
    help = "Resume a failed or cancelled reward run from its newest checkpoint (queued for the worker)."
    action = staticmethod(reward_run_resume)
    done = "reward run {run.pk} queued to resume (job {run.job_id})"
