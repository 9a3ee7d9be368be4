from django.core.management.base import BaseCommand

from jobs.services import job_send_unsent


class Command(BaseCommand):
    help = ("Send the queued jobs whose message never reached the broker (it was down when they were "
            "started). Safe to run any time, e.g. every few minutes from cron: a job runs once however "
            "often it is sent.")

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", type=float, default=None, metavar="SECONDS",
            help="Also send again jobs sent longer ago than this and still queued (messages lost with a "
                 "broker that kept no data). Pick more than the longest wait behind other jobs.")

    def handle(self, *args, **options):
        self.stdout.write(f"{job_send_unsent(older_than_s=options['older_than'])} unsent job(s) sent")
