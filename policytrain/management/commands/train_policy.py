"""``manage.py train_policy --reward-model ID [--algorithm 1|2] [--init-checkpoint ID|production] [--set k=v ...] [--sync]``."""
from __future__ import annotations

import json

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError

from ...services import policy_run_execute, policy_run_start
from ._common import application_error, parse_ids, parse_set, run_sync


class Command(BaseCommand):
    help = "Start a OneReward policy RL run (queued for a worker, or --sync to run here with a progress bar)."

    def add_arguments(self, parser):
        parser.add_argument("--reward-model", type=int, required=True, help="RewardModel id")
        parser.add_argument("--algorithm", type=int, choices=[1, 2], default=1)
        parser.add_argument("--base-policy", default=None, help='FLUX.1-Fill folder or hub id (default "tiny")')
        parser.add_argument("--init-checkpoint", default=None, metavar="ID|production",
                            help="start the LoRA weights from this checkpoint's (default: fresh)")
        parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override an RLConfig field")
        parser.add_argument("--samples", default=None, help="comma-separated sample ids (default: the train split)")
        parser.add_argument("--name", default="")
        parser.add_argument("--sync", action="store_true", help="run in this process instead of a worker")

    def handle(self, *args, **opts):
        RewardModel = apps.get_model("rewardtrain", "RewardModel")
        reward_model = RewardModel.objects.filter(pk=opts["reward_model"]).first()
        if reward_model is None:
            raise CommandError(f"no reward model with id {opts['reward_model']}")
        ids = parse_ids(opts["samples"])
        init = _init_checkpoint(opts["init_checkpoint"])
        try:
            run = policy_run_start(reward_model=reward_model, base_policy=opts["base_policy"],
                                   algorithm=opts["algorithm"], overrides=parse_set(opts["set"]),
                                   samples=ids or None, name=opts["name"], enqueue=not opts["sync"],
                                   init_checkpoint=init)
        except ApplicationError as exc:
            raise application_error(exc) from exc
        self.stdout.write(f"policy run {run.pk} (job {run.job_id}) -> {run.output_dir}")
        if not opts["sync"]:
            self.stdout.write("queued; a worker on the gpu queue will pick it up")
            return
        job = run_sync(run.job, policy_run_execute, self.stdout)
        self.stdout.write(json.dumps(job.result, default=str))


def _init_checkpoint(value: str | None):
    """--init-checkpoint: an id, or "production" (what serves now)."""
    from ...models import PolicyCheckpoint
    from ...selectors import production_checkpoint

    if not value:
        return None
    if value == "production":
        found = production_checkpoint()
        if found is None:
            raise CommandError("nothing is in production yet (promote a checkpoint first)")
        return found
    found = PolicyCheckpoint.objects.filter(pk=int(value)).first() if value.isdigit() else None
    if found is None:
        raise CommandError(f"no checkpoint {value!r} (give an id or 'production')")
    return found
