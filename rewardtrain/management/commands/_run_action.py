"""One shape for the commands that act on an existing reward run (cancel, resume)."""
from __future__ import annotations

from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError

from ...models import RewardRun


class RunActionCommand(BaseCommand):
    """Subclasses set ``help``, ``action`` (a service taking ``run=``) and ``done`` (a message format)."""

    action: Callable[..., RewardRun]
    done: str

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)

    def handle(self, *args, **o):
        run = RewardRun.objects.filter(pk=o["run_id"]).first()
        if run is None:
            raise CommandError(f"reward run {o['run_id']} does not exist")
        try:
            run = type(self).action(run=run)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.done.format(run=run))
