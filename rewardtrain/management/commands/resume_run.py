from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError

from ...models import RewardRun
from ...services import reward_run_resume


class Command(BaseCommand):
    help = "Resume a failed or cancelled reward run from its newest checkpoint (queued for the worker)."

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)

    def handle(self, *args, **o):
        run = RewardRun.objects.filter(pk=o["run_id"]).first()
        if run is None:
            raise CommandError(f"reward run {o['run_id']} does not exist")
        try:
            run = reward_run_resume(run=run)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"reward run {run.pk} queued to resume (job {run.job_id})")
