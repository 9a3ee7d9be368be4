"""Worker start-up hook: a (re)started worker fails the jobs its dead predecessor left running,
and sends the queued jobs whose message never reached the broker (it is reachable now)."""
import logging

from celery.signals import worker_ready

logger = logging.getLogger(__name__)


@worker_ready.connect
def _reap_stale_jobs(**kwargs) -> None:
    from .services import job_fail_stale

    job_fail_stale()


@worker_ready.connect
def _send_unsent_jobs(**kwargs) -> None:
    from .services import job_send_unsent

    # A failing sweep must not keep the worker from serving; the next start or the command retries.
    try:
        sent = job_send_unsent()
    except Exception:
        logger.exception("sending the unsent queued jobs failed")
        return
    if sent:
        logger.info("sent %d queued job(s) whose message had not reached the broker", sent)
