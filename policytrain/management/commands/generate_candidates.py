"""``manage.py generate_candidates --checkpoint ID [--opponent ID] --samples 1,2,3 --campaign NAME [--sync]``."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError

from ...models import PolicyCheckpoint
from ...services import generation_execute, generation_job_start
from ._common import application_error, parse_ids, parse_set, run_sync


class Command(BaseCommand):
    help = "Fill samples with a checkpoint and an opponent, store the candidates and start a pairwise campaign."

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", type=int, required=True)
        parser.add_argument("--opponent", type=int, default=None, help="checkpoint id (default: the base policy)")
        parser.add_argument("--samples", default=None, help="comma-separated sample ids")
        parser.add_argument("--task", default=None, help="all samples of this task (with --split)")
        parser.add_argument("--split", default=None, choices=["train", "val", "test"])
        parser.add_argument("--seeds", type=int, nargs="+", default=[0])
        parser.add_argument("--campaign", required=True, help="name of the campaign to create")
        parser.add_argument("--criteria", nargs="*", default=None, help="criterion slugs (default: all of the task)")
        parser.add_argument("--overlap", type=int, default=3)
        parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                            help="sampler setting: num_inference_steps, guidance, true_cfg, ...")
        parser.add_argument("--sync", action="store_true", help="run in this process instead of a worker")

    def _checkpoint(self, pk):
        if pk is None:
            return None
        obj = PolicyCheckpoint.objects.filter(pk=pk).first()
        if obj is None:
            raise CommandError(f"no policy checkpoint with id {pk}")
        return obj

    def handle(self, *args, **opts):
        ids = parse_ids(opts["samples"])
        sample_filter = {"tasks": [opts["task"]]} if opts["task"] else {}
        if opts["split"]:
            sample_filter["split"] = opts["split"]
        if not ids and not sample_filter:
            raise CommandError("choose samples with --samples IDS or --task/--split")
        kwargs = dict(checkpoint=self._checkpoint(opts["checkpoint"]), opponent=self._checkpoint(opts["opponent"]),
                      samples=ids or None, sample_filter=sample_filter, seeds=opts["seeds"],
                      campaign_name=opts["campaign"], criteria=opts["criteria"], overlap=opts["overlap"],
                      params=parse_set(opts["set"]))
        try:
            gen = generation_job_start(**kwargs, enqueue=not opts["sync"])
        except ApplicationError as exc:
            raise application_error(exc) from exc
        self.stdout.write(f"generation job {gen.pk} (job {gen.job_id})")
        if not opts["sync"]:
            self.stdout.write("queued; a worker on the gpu queue will pick it up")
            return
        job = run_sync(gen.job, generation_execute, self.stdout)
        self.stdout.write(json.dumps(job.result, default=str))
