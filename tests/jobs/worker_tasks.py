"""A job kind for worker tests, registered in a real worker with ``-I tests.jobs.worker_tasks``.

Its body counts steps slowly, reporting each one, and continues from the last reported step when
resumed, as a training engine continues from its last checkpoint. ``needs-cuda`` runs the same
body where the job's config asks for CUDA devices (``processes``), to show a worker refusing it.
"""
from __future__ import annotations

import os
import time

from jobs.registry import JobType, register
from jobs.services import JobReporter


def count_slowly(job, reporter: JobReporter) -> dict:
    reporter.min_interval = 0  # every step is written: the test reads where the run is
    total, pause = int(job.config["steps"]), float(job.config.get("pause", 0.2))
    start = job.step if job.config.get("resume") else 0
    for step in range(start + 1, total + 1):
        time.sleep(pause)
        reporter.progress({"step": step, "total_steps": total, "kind": "train", "value": step})
    return {"resumed_from": start, "pid": os.getpid()}


def processes(job) -> int:
    return int(job.config.get("processes", 1))


register(JobType(kind="count", execute="tests.jobs.worker_tasks.count_slowly"))
register(JobType(kind="needs-cuda", execute="tests.jobs.worker_tasks.count_slowly", role="gpu", torch=True,
                 processes="tests.jobs.worker_tasks.processes"))
