"""Celery tasks: thin, one idempotent service call each."""

from celery import shared_task
from django.db import DatabaseError
from django.utils import timezone

from reviewapp.monitoring.services import fold_interval_seconds, rollups_fold
from reviewapp.monitoring.system import system_watch


@shared_task(
    name="monitoring.fold_rollups",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=3,
)
def fold_rollups() -> int:
    # Bounded by the beat interval, so a backlog never piles up overlapping runs.
    return rollups_fold(max_seconds=fold_interval_seconds())


@shared_task(name="monitoring.watch_system", acks_late=True, reject_on_worker_lost=True)
def watch_system() -> dict:
    return system_watch(now=timezone.now())
