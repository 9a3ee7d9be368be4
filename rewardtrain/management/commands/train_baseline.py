"""Train the baseline learner on a snapshot: queued for a worker, or here with --sync.

Its held-out accuracy per task x criterion (with 95 % intervals) says whether the snapshot's
labels are learnable from the two images before the VLM reward model is trained on them.
"""
from django.core.management.base import BaseCommand, CommandError

from core.cli import error_line
from core.errors import ApplicationError
from jobs.models import JobStatus

from ...services import baseline_execute_job, baseline_start
from ._run_action import snapshot_and_overrides


class Command(BaseCommand):
    help = "Train the baseline learner (a small siamese CNN) on a dataset snapshot and report its held-out accuracy."

    def add_arguments(self, parser):
        parser.add_argument("--snapshot", type=int, required=True, help="DatasetSnapshot id")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="BaselineConfig override (JSON value), e.g. max_steps=300")
        parser.add_argument("--name", default="")
        parser.add_argument("--sync", action="store_true", help="train in this process instead of queueing a job")

    def handle(self, *args, **o):
        snapshot, overrides = snapshot_and_overrides(o)
        try:
            run = baseline_start(snapshot=snapshot, overrides=overrides, name=o["name"], enqueue=not o["sync"])
        except ApplicationError as exc:
            raise CommandError(error_line(exc)) from None
        if not o["sync"]:
            self.stdout.write(f"baseline {run.pk} queued (job {run.job_id})")
            return
        import torch
        from django.conf import settings

        torch.set_num_threads(max(1, settings.TORCH_NUM_THREADS))
        job = baseline_execute_job(run.job_id)
        if job is None or job.status != JobStatus.SUCCEEDED:
            error = (job.error if job else "the job was not queued") or (job.status if job else "")
            raise CommandError(f"baseline {run.pk} {job.status if job else 'not started'}: {error.splitlines()[0]}")
        run.refresh_from_db()
        self.stdout.write(run.report.get("table", ""))
        self.stdout.write(f"baseline {run.pk} finished: {run.output_dir}")
