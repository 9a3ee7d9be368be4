"""Shared shapes of the reward commands: acting on an existing run (cancel, resume), and reading a
training command's --snapshot and --set options (train_reward, train_baseline)."""
from __future__ import annotations

from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError

from annotation.models import DatasetSnapshot
from core.errors import ApplicationError

from ...engine.config import parse_override
from ...models import RewardRun


def snapshot_and_overrides(options: dict) -> tuple[DatasetSnapshot, dict]:
    """The --snapshot row and the --set KEY=VALUE overrides (JSON values), or a CommandError."""
    snapshot = DatasetSnapshot.objects.filter(pk=options["snapshot"]).first()
    if snapshot is None:
        raise CommandError(f"snapshot {options['snapshot']} does not exist")
    overrides = {}
    for item in options["set"]:
        try:
            key, value = parse_override(item)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        overrides[key] = value
    return snapshot, overrides


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
