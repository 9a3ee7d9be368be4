"""A job task for worker tests, loaded into a real worker with ``-I tests.jobs.worker_tasks``.

Its body counts steps slowly, reporting each one, and continues from the last reported step when
resumed, as a training engine continues from its last checkpoint.
"""
from __future__ import annotations

import os
import time

from celery import shared_task

from jobs.services import JobReporter, job_execute


def count_slowly(job, reporter: JobReporter) -> dict:
    reporter.min_interval = 0  # every step is written: the test reads where the run is
    total, pause = int(job.config["steps"]), float(job.config.get("pause", 0.2))
    start = job.step if job.config.get("resume") else 0
    for step in range(start + 1, total + 1):
        time.sleep(pause)
        reporter.progress({"step": step, "total_steps": total, "kind": "train", "value": step})
    return {"resumed_from": start, "pid": os.getpid()}


@shared_task(name="tests.jobs.worker_tasks.count_task", acks_late=True)
def count_task(job_id: int) -> None:
    job_execute(job_id, count_slowly)
