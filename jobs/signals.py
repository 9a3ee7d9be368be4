"""Worker start-up hook: a (re)started worker fails the jobs its dead predecessor left running."""
from celery.signals import worker_ready


@worker_ready.connect
def _reap_stale_jobs(**kwargs) -> None:
    from .services import job_fail_stale

    job_fail_stale()
