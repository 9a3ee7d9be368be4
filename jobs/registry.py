"""The registry of job kinds: what runs a job of each kind, on which queue, on what device.

Every long job is started by ``jobs.services.job_start`` and run by the one Celery task
``jobs.tasks.run_job``; what differs between kinds is declared here once, as a ``JobType``, by the
app that owns the kind (its ``jobs.py`` module, loaded when the ``jobs`` app is ready). Functions
are named by dotted path and imported only when a job runs, so the web process that starts a job
never imports torch or an engine.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import Any, Literal

from django.conf import settings

Role = Literal["default", "gpu"]


class UnknownJobKind(LookupError):
    """A job whose kind no app registered (a typo, or an app left out of INSTALLED_APPS)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"no job type is registered for kind {kind!r} "
                         f"(registered: {', '.join(sorted(_TYPES)) or 'none'})")
        self.kind = kind


@dataclass(frozen=True)
class JobType:
    """One kind of job.

    ``execute`` names the body run under the job state machine: ``(job, reporter) -> result
    dict`` (``jobs.services.job_execute``). ``role`` is the queue family: ``default`` for CPU jobs
    of a few minutes, ``gpu`` for training, generation and scoring (settings.JOB_QUEUES can send
    one kind to a queue of its own). ``torch`` makes the worker set torch's thread count before
    the body runs. ``processes`` names ``(job) -> int``, how many processes (ranks) the job runs;
    when its configured device is CUDA each needs a device of its own, and a worker with fewer
    refuses the job instead of crashing later in the engine (without it: one). ``finished`` names
    ``(job) -> None``, run after a delivery that found the job finished (clean-up that must follow
    the outcome, such as deleting an import's upload). ``resumable`` kinds can be resumed from
    failed or cancelled; ``resume_check`` names ``(job) -> None`` that raises
    ``core.errors.Conflict`` for one that may not be (a run that already registered its model).
    """

    kind: str
    execute: str
    role: Role = "default"
    torch: bool = False
    processes: str = ""
    finished: str = ""
    resumable: bool = False
    resume_check: str = ""

    @property
    def queue(self) -> str:
        """The Celery queue this kind's jobs are sent to (settings.JOB_QUEUES overrides the role's)."""
        return settings.JOB_QUEUES.get(self.kind) or (settings.JOB_GPU_QUEUE if self.role == "gpu" else "default")

    def hook(self, name: str) -> Any | None:
        """The function a hook field names, imported now (None when the kind declares none)."""
        path = getattr(self, name)
        return import_path(path) if path else None


_TYPES: dict[str, JobType] = {}


def register(job_type: JobType) -> JobType:
    """Declare a kind (at import of an app's ``jobs.py``). Registering the same declaration again
    is harmless; a different one for a kind already taken is a programming error."""
    known = _TYPES.get(job_type.kind)
    if known is not None and known != job_type:
        raise ValueError(f"job kind {job_type.kind!r} is registered twice, differently: {known} and {job_type}")
    _TYPES[job_type.kind] = job_type
    return job_type


def job_type(kind: str) -> JobType:
    """The declaration of ``kind``; ``UnknownJobKind`` (with the registered kinds) when there is none."""
    try:
        return _TYPES[kind]
    except KeyError:
        raise UnknownJobKind(kind) from None


def job_types() -> dict[str, JobType]:
    """Every registered kind (a copy)."""
    return dict(_TYPES)


def job_queues() -> dict[str, str]:
    """kind → queue for every registered kind, as an operator starts workers for them."""
    return {kind: t.queue for kind, t in sorted(_TYPES.items())}


@cache
def import_path(path: str) -> Any:
    """``"package.module.name"`` → the object (a mistyped path fails the job with an ImportError)."""
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)
