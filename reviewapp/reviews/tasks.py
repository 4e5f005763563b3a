"""Celery tasks: thin, keyword ids in, one idempotent service call each."""

import logging
import threading
import time
from collections.abc import Callable

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from reviewapp.reviews.services.scoring import challenger_score, chunk_score, unscored_sweep
from reviewapp.reviews.services.service_levels import queue_breaches_note

logger = logging.getLogger(__name__)

RETRY = {
    "autoretry_for": (DatabaseError, ConnectionError),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 8,
}


@shared_task(name="reviews.score_items", acks_late=True, reject_on_worker_lost=True, **RETRY)
def score_items(*, item_ids: list[int]) -> int:
    return chunk_score(item_ids=item_ids)


@shared_task(name="reviews.score_challenger", acks_late=True, reject_on_worker_lost=True, **RETRY)
def score_challenger(*, model_version_id: int, item_ids: list[int]) -> int:
    return challenger_score(model_version_id=model_version_id, item_ids=item_ids)


@shared_task(name="reviews.sweep_unscored_items", acks_late=True, reject_on_worker_lost=True)
def sweep_unscored_items() -> dict:
    return unscored_sweep(older_than_seconds=settings.SWEEPER_INTERVAL_SECONDS)


@shared_task(name="reviews.check_service_levels", acks_late=True, reject_on_worker_lost=True)
def check_service_levels() -> dict:
    return queue_breaches_note()


# --- embedded mode: the web process checks ------------------------------------------------------

_check_lock = threading.Lock()
_last_check: float | None = None


def check_if_due(*, clock: Callable[[], float] = time.monotonic) -> bool:
    """Embedded mode (eager Celery, no beat): run the service-level check at most every
    ``SLA_CHECK_SECONDS`` from the web process, so breaches are noted without a broker. Called
    after each response; never raises into it. True when it checked."""
    global _last_check
    if not check_service_levels.app.conf.task_always_eager or settings.SLA_CHECK_SECONDS <= 0:
        return False
    now = clock()
    with _check_lock:
        if _last_check is not None and now - _last_check < settings.SLA_CHECK_SECONDS:
            return False
        _last_check = now
    try:
        check_service_levels()
    except Exception:
        logger.exception("the embedded service-level check failed; it runs again later")
    return True


def check_after_response(sender=None, **kwargs) -> None:
    check_if_due()
