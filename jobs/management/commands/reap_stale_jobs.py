from django.core.management.base import BaseCommand

from jobs.services import job_fail_stale


class Command(BaseCommand):
    help = "Mark running jobs whose worker stopped sending heartbeats as failed (they can be resumed)."

    def handle(self, *args, **options):
        self.stdout.write(f"{job_fail_stale()} stale job(s) marked failed")
