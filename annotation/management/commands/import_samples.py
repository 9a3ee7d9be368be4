from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.services.imports import ImportFailed, import_samples
from core.errors import ApplicationError


class Command(BaseCommand):
    help = ("Import samples and candidates from a folder or .zip holding manifest.jsonl (all-or-nothing), "
            "as an import job run in this process.")

    def add_arguments(self, parser):
        parser.add_argument("path", help="folder or .zip with manifest.jsonl at its top")

    def handle(self, *args, path: str, **options):
        source = Path(path)
        if not source.exists():
            raise CommandError(f"{path} does not exist")
        try:
            batch = import_samples(path=source)
        except ImportFailed as exc:
            for row in exc.batch.errors:
                self.stderr.write(f"  line {row['line']}: {row['error']}")
            raise CommandError(f"{exc.message} (import {exc.batch.pk}, job {exc.batch.job_id})") from None
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(
            f"Imported {batch.samples_created} samples and {batch.candidates_created} candidates "
            f"(import {batch.pk}, job {batch.job_id})."
        ))
