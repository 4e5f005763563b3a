"""Celery tasks: thin, keyword ids in, one idempotent service call each."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError

from reviewapp.core.embedded import AfterResponse
from reviewapp.reviews.partitions import partitions_ensure as history_partitions_ensure
from reviewapp.reviews.services.scoring import (
    challenger_score,
    challenger_timed_out,
    chunk_score,
    chunk_timed_out,
    unscored_sweep,
)
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
    try:
        return chunk_score(item_ids=item_ids)
    except SoftTimeLimitExceeded:
        return chunk_timed_out(
            item_ids=item_ids, requeue=lambda ids: score_items.delay(item_ids=ids)
        )


@shared_task(name="reviews.score_challenger", acks_late=True, reject_on_worker_lost=True, **RETRY)
def score_challenger(*, model_version_id: int, item_ids: list[int]) -> int:
    try:
        return challenger_score(model_version_id=model_version_id, item_ids=item_ids)
    except SoftTimeLimitExceeded:
        return challenger_timed_out(
            model_version_id=model_version_id,
            item_ids=item_ids,
            requeue=lambda ids: score_challenger.delay(
                model_version_id=model_version_id, item_ids=ids
            ),
        )


@shared_task(name="reviews.sweep_unscored_items", acks_late=True, reject_on_worker_lost=True)
def sweep_unscored_items() -> dict:
    return unscored_sweep(older_than_seconds=settings.SWEEPER_INTERVAL_SECONDS)


@shared_task(name="reviews.check_service_levels", acks_late=True, reject_on_worker_lost=True)
def check_service_levels() -> dict:
    return queue_breaches_note()


@shared_task(name="reviews.partitions_ensure", acks_late=True, reject_on_worker_lost=True)
def partitions_ensure() -> list[int]:
    """The history's monthly partitions for this month and the next ones (PostgreSQL)."""
    return history_partitions_ensure()


# --- embedded mode: the web process checks ------------------------------------------------------

# Breaches are noted without a broker, at most every SLA_CHECK_SECONDS.
embedded_check = AfterResponse(
    check_service_levels, seconds=lambda: settings.SLA_CHECK_SECONDS, what="service-level check"
)
# The months ahead are created once a day, like the history's archive (a PostgreSQL database run
# without a beat still gets them).
embedded_partitions = AfterResponse(
    partitions_ensure,
    seconds=lambda: settings.ARCHIVE_EMBEDDED_SECONDS,
    what="history partitions",
)
