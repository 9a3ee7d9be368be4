"""Build a dataset snapshot from judgments: in this process (default) or as a queued job."""
from django.core.management.base import BaseCommand, CommandError

from annotation.services.snapshots import AGGREGATIONS, DEFAULT_AGGREGATION, snapshot_create, snapshot_execute
from core.cli import error_line
from core.errors import ApplicationError
from jobs.models import JobStatus


class Command(BaseCommand):
    help = "Build a dataset snapshot (aggregated preference pairs + images) for reward training."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--campaign", type=int, action="append", default=[], help="campaign id (repeatable)")
        parser.add_argument("--criterion", action="append", default=[], help="criterion slug (repeatable)")
        parser.add_argument("--task", action="append", default=[], help="task type slug (repeatable)")
        parser.add_argument("--date-from")
        parser.add_argument("--date-to")
        parser.add_argument("--aggregation", choices=AGGREGATIONS, default=DEFAULT_AGGREGATION,
                            help=f"how votes become pairs (default {DEFAULT_AGGREGATION}; docs/reward-model.md)")
        parser.add_argument("--enqueue", action="store_true", help="queue a job for a worker instead of building here")

    def handle(self, *args, **o):
        flt = {"campaign_ids": o["campaign"], "criteria": o["criterion"], "task_types": o["task"],
               "date_from": o["date_from"], "date_to": o["date_to"]}
        try:
            snapshot = snapshot_create(name=o["name"], filter=flt, aggregation=o["aggregation"], enqueue=o["enqueue"])
        except ApplicationError as exc:
            raise CommandError(error_line(exc)) from None
        if o["enqueue"]:
            self.stdout.write(f"snapshot {snapshot.pk} queued (job {snapshot.job_id})")
            return
        snapshot = snapshot_execute(snapshot.job_id)
        if snapshot.status != JobStatus.SUCCEEDED:
            raise CommandError(f"snapshot {snapshot.pk} failed: {snapshot.error.splitlines()[0] if snapshot.error else ''}")
        c = snapshot.counts
        self.stdout.write(f"snapshot {snapshot.pk} {snapshot.content_hash[:12]}: {c['pairs']} pairs "
                          f"(train {c['per_split']['train']}, val {c['per_split']['val']}, test {c['per_split']['test']}) "
                          f"-> {snapshot.path}")
