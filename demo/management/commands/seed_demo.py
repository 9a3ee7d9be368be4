from django.core.management.base import BaseCommand

from demo.seed import demo_seed


class Command(BaseCommand):
    help = "Create demo users (annotator, curator, scientist) and a started demo campaign per task type."

    def handle(self, *args, **options):
        summary = demo_seed()
        self.stdout.write(self.style.SUCCESS("Demo users (username / password):"))
        for user, password in summary.users.items():
            self.stdout.write(f"  {user:<10} {password}")
        self.stdout.write("Demo campaigns: " + ", ".join(summary.campaigns))
