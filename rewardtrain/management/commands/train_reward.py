"""Start reward-model training on a snapshot: queued for the gpu worker, or here with --sync."""
from django.core.management.base import BaseCommand, CommandError

from core.cli import error_line
from core.errors import ApplicationError
from jobs.models import JobStatus

from ...services import reward_run_execute_job, reward_run_start
from ._run_action import snapshot_and_overrides


class Command(BaseCommand):
    help = "Train a OneReward reward model on a dataset snapshot."

    def add_arguments(self, parser):
        parser.add_argument("--snapshot", type=int, required=True, help="DatasetSnapshot id")
        parser.add_argument("--preset", default="tiny")
        parser.add_argument("--base-model", default=None, help="Qwen2.5-VL folder or hub id (default: built-in tiny)")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (JSON value)")
        parser.add_argument("--name", default="")
        parser.add_argument("--sync", action="store_true", help="train in this process with a progress bar")

    def handle(self, *args, **o):
        snapshot, overrides = snapshot_and_overrides(o)
        try:
            run = reward_run_start(snapshot=snapshot, base_model=o["base_model"], preset=o["preset"],
                                   overrides=overrides, name=o["name"], enqueue=not o["sync"])
        except ApplicationError as exc:
            raise CommandError(error_line(exc)) from None
        if not o["sync"]:
            self.stdout.write(f"reward run {run.pk} queued (job {run.job_id})")
            return
        _run_sync(self, run.job_id, run.pk)


def _run_sync(cmd: BaseCommand, job_id: int, run_id: int) -> None:
    import os

    import torch
    from django.conf import settings
    from tqdm import tqdm

    torch.set_num_threads(max(1, settings.TORCH_NUM_THREADS))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    bar = tqdm(total=None, desc=f"run {run_id}", unit="step")

    def on_progress(event: dict) -> None:
        if event.get("kind") == "train":
            bar.total = event.get("total_steps") or bar.total
            bar.n = event.get("step", bar.n)
            if isinstance(event.get("loss"), float):
                bar.set_postfix(loss=f"{event['loss']:.4f}")
            bar.refresh()

    job = reward_run_execute_job(job_id, on_progress=on_progress)
    bar.close()
    if job is None or job.status != JobStatus.SUCCEEDED:
        error = (job.error if job else "the job was not queued") or (job.status if job else "")
        raise CommandError(f"reward run {run_id} {job.status if job else 'not started'}: {error.splitlines()[0]}")
    from ...models import RewardModel

    model = RewardModel.objects.get(run_id=run_id)
    cmd.stdout.write(model.eval_report.get("table", ""))
    cmd.stdout.write(f"reward model {model.pk} registered: {model.path}")
