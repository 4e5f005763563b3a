"""Celery tasks of the webhooks: thin, ids in, one idempotent service call each."""

import contextlib
import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError

from reviewapp.core.embedded import AfterResponse
from reviewapp.core.events import events_behind_horizon
from reviewapp.webhooks.models import Endpoint
from reviewapp.webhooks.services import (
    FANOUT_BATCH,
    FANOUT_QUEUED_KEY,
    FANOUT_QUEUED_SECONDS,
    deliveries_attempt,
    deliveries_due,
    events_fanout,
)

logger = logging.getLogger(__name__)

FANOUT_RECHECK_SECONDS = 0.5
# Deliveries per task: enough to spread over the workers, few enough to share two commits.
DELIVERY_BATCH = 100
RETRY = {
    "autoretry_for": (DatabaseError, ConnectionError),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 8,
}


@shared_task(name="webhooks.fanout", acks_late=True, reject_on_worker_lost=True, **RETRY)
def fanout() -> int:
    try:
        cache.delete(FANOUT_QUEUED_KEY)  # a commit from now on queues a fresh fan-out
    except Exception:
        logger.warning("cache unavailable; the sweep covers what this fan-out misses")
    # Asked before the read as well as after: an event hidden when the read ran may be readable
    # by the time it ended, and asking only after would then find nothing hidden and leave it
    # to the next sweep.
    hidden = not fanout.app.conf.task_always_eager and events_behind_horizon()
    sent = _fanout_all()
    if not fanout.app.conf.task_always_eager and (hidden or events_behind_horizon()):
        # Events that older transactions still hide: look again shortly, not at the next sweep.
        fanout.apply_async(countdown=FANOUT_RECHECK_SECONDS)
    return sent


def _fanout_all() -> int:
    """Fan out batch after batch until the readable events are all handed out."""
    sent = 0
    while True:
        batch = events_fanout()
        deliver_soon(batch.delivery_ids)
        sent += len(batch.delivery_ids)
        if batch.events_read < FANOUT_BATCH:
            return sent


@shared_task(name="webhooks.deliver", acks_late=True, reject_on_worker_lost=True, **RETRY)
def deliver(*, delivery_ids: list[int]) -> None:
    waits = deliveries_attempt(delivery_ids=delivery_ids)
    # A short wait is scheduled here; a long one is left to the sweep (a broker holds a
    # delayed task only up to its visibility timeout, and the row already says when).
    if deliver.app.conf.task_always_eager:
        return  # embedded mode cannot wait in process: the sweep retries
    soon: dict[float, list[int]] = {}
    for delivery_id, wait in waits.items():
        if wait <= settings.WEBHOOK_COUNTDOWN_MAX_SECONDS:
            soon.setdefault(wait, []).append(delivery_id)
    for wait, ids in soon.items():
        deliver.apply_async(kwargs={"delivery_ids": ids}, countdown=wait)


def deliver_soon(delivery_ids: list[int]) -> None:
    """Queue the deliveries in batches (each batch costs two commits, not two per delivery)."""
    for start in range(0, len(delivery_ids), DELIVERY_BATCH):
        deliver.delay(delivery_ids=delivery_ids[start : start + DELIVERY_BATCH])


@shared_task(name="webhooks.sweep", acks_late=True, reject_on_worker_lost=True)
def sweep() -> int:
    """The beat's sweep: fan out what no commit announced (broker down then), attempt what is
    due (retries, deliveries whose task was lost)."""
    _fanout_all()
    due = deliveries_due()
    deliver_soon(due)
    return len(due)


def fanout_soon(sender=None, **kwargs) -> None:
    """After a commit that recorded events: queue a fan-out unless one is already waiting, or
    unless no endpoint could hear them (checked at most every ``FANOUT_QUEUED_SECONDS``; a
    change of endpoints clears the mark). Costs one cache round trip on most commits. Never
    raises into the request (the broker or cache may be down; the sweep catches up)."""
    # Guardrail webhooks get their endpoint at their first breach: a breach always looks.
    breach = "guardrail.breached" in (kwargs.get("types") or ())
    try:
        if not cache.add(FANOUT_QUEUED_KEY, 1, timeout=FANOUT_QUEUED_SECONDS) and not breach:
            return
        if not breach and not Endpoint.objects.filter(active=True).exists():
            return  # the mark stays: the next commits need not ask again for a moment
    except Exception:
        logger.warning("could not check for a queued webhook fan-out; queueing one")
    try:
        fanout.delay()
    except Exception:
        logger.exception("could not queue the webhook fan-out; left to the sweep")
        with contextlib.suppress(Exception):
            cache.delete(FANOUT_QUEUED_KEY)


# --- embedded mode: the web process sweeps -----------------------------------------------------

# Failed deliveries are retried without a broker, at most every WEBHOOK_SWEEP_SECONDS.
embedded_sweep = AfterResponse(
    sweep, seconds=lambda: settings.WEBHOOK_SWEEP_SECONDS, what="webhook sweep"
)
