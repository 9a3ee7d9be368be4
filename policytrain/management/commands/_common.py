"""Shared helpers of the policytrain commands: key=value overrides, sample lists, running a job in-process."""
from __future__ import annotations

import json

from django.core.management.base import CommandError

from core.errors import ApplicationError
from jobs.models import Job
from jobs.services import JobReporter, job_execute


def parse_set(items: list[str] | None) -> dict:
    """``k=v`` pairs; values are JSON when they parse (numbers, lists, dicts, booleans), else strings."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise CommandError(f"--set {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def parse_ids(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as exc:
        raise CommandError(f"sample ids must be comma-separated integers, got {text!r}") from exc


def application_error(exc: ApplicationError) -> CommandError:
    details = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in exc.fields.items()
                        if [str(m) for m in v] != [exc.message])
    return CommandError(f"{exc.message} {details}".strip().splitlines()[0])


def run_sync(job: Job, body, stdout) -> Job:
    """Run ``body`` in this process through the job life cycle, with a tqdm bar."""
    from tqdm import tqdm

    bar = tqdm(unit="step", dynamic_ncols=True)

    class _BarReporter(JobReporter):
        def progress(self, event: dict) -> None:
            bar.total = event.get("total_steps") or bar.total
            bar.n = int(event.get("step", 0))
            shown = {k: round(v, 4) for k, v in event.items() if k in ("loss", "grad_norm") and isinstance(v, float)}
            bar.set_postfix(shown, refresh=False)
            bar.refresh()
            super().progress(event)

    def wrapped(job_, _reporter):
        return body(job_, _BarReporter(job_))

    try:
        finished = job_execute(job.pk, wrapped)
    finally:
        bar.close()
    if finished is None:
        raise CommandError(f"job {job.pk} was not queued (already claimed by a worker?)")
    if finished.status != "succeeded":
        raise CommandError(f"job {job.pk} {finished.status}: {finished.error.splitlines()[0] if finished.error else ''}")
    return finished
