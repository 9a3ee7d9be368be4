from ...services import reward_run_cancel
from ._run_action import RunActionCommand


class Command(RunActionCommand):
    help = "Cancel a reward run (queued: at once; running: at its next step, with a resumable checkpoint)."
    action = staticmethod(reward_run_cancel)
    done = "reward run {run.pk}: cancel requested (job {run.job.status})"
