"""Services for jobs: create one, report progress, finish or fail it; claim one for a run, and
queue again what no worker took."""

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from reviewapp.core.models import Job

logger = logging.getLogger(__name__)


def job_create(*, kind: str, total: int, use_case=None, created_by=None, params=None) -> Job:
    return Job.objects.create(
        kind=kind,
        total=total,
        use_case=use_case,
        created_by=created_by if created_by and created_by.is_authenticated else None,
        params=params or {},
    )


def job_start(*, job_id) -> None:
    Job.objects.filter(pk=job_id, state=Job.State.QUEUED).update(
        state=Job.State.RUNNING, started_at=timezone.now()
    )


def jobs_start(*, job_ids) -> None:
    """``job_start`` for many jobs in one statement. ``job_ids`` are keys: as a subquery over
    the items, PostgreSQL walked each queued job's items to match them (see ``chunk_score``)."""
    Job.objects.filter(pk__in=job_ids, state=Job.State.QUEUED).update(
        state=Job.State.RUNNING, started_at=timezone.now()
    )


def job_progress(*, job_id, done: int) -> None:
    """Add ``done`` units of work; the job is done when every unit is."""
    if done <= 0:
        return
    Job.objects.filter(pk=job_id).update(done=Least(F("done") + done, F("total")))
    now = timezone.now()
    Job.objects.filter(pk=job_id, done__gte=F("total")).exclude(
        state__in=[Job.State.DONE, Job.State.FAILED]
    ).update(
        state=Job.State.DONE, started_at=Coalesce(F("started_at"), Value(now)), finished_at=now
    )


def job_finish(*, job_id, result: dict[str, Any] | None = None) -> None:
    Job.objects.filter(pk=job_id).update(
        state=Job.State.DONE, done=F("total"), result=result or {}, finished_at=timezone.now()
    )


def job_fail(*, job_id, error: str) -> None:
    Job.objects.filter(pk=job_id).update(
        state=Job.State.FAILED, error=error[:10_000], finished_at=timezone.now()
    )


def _stale_before(now):
    """A run started before this has ended one way or another: no task outlives the hard
    time limit (``CELERY_TASK_TIME_LIMIT``), so a job still "running" then lost its worker."""
    return now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)


def job_claim(*, job_id, now=None) -> bool:
    """Take the job for this run: True when it was queued, or running but its worker is gone;
    False when another run holds it or it has ended. A job queued twice (a sweep, a
    redelivered message) so runs once at a time."""
    now = now or timezone.now()
    claimable = Q(state=Job.State.QUEUED) | Q(
        state=Job.State.RUNNING, started_at__lt=_stale_before(now)
    )
    claimed = (
        Job.objects.filter(pk=job_id)
        .filter(claimable)
        .update(state=Job.State.RUNNING, started_at=now, done=0)
    )
    return bool(claimed)


# How to queue a job's task again, by kind: registered by the app that owns the task (the
# layers above core), so the sweep here needs to know none of them.
_requeuers: dict[str, Callable[[Job], None]] = {}


def job_requeuer_register(kind: str, requeue: Callable[[Job], None]) -> None:
    _requeuers[kind] = requeue


def jobs_queued_sweep(*, now=None) -> int:
    """Queue again the jobs no worker took: still queued a sweeper interval after they were
    made (their message was never published, the broker being down, or it was lost), or still
    running past the time limit (worker and message lost). Returns how many were queued."""
    now = now or timezone.now()
    waiting = Job.objects.filter(kind__in=list(_requeuers)).filter(
        Q(
            state=Job.State.QUEUED,
            created_at__lt=now - timedelta(seconds=settings.SWEEPER_INTERVAL_SECONDS),
        )
        | Q(state=Job.State.RUNNING, started_at__lt=_stale_before(now))
    )
    queued = 0
    for job in waiting.order_by("created_at")[:100]:
        try:
            _requeuers[job.kind](job)
        except Exception:
            logger.exception(
                "could not queue %s job %s again; the next sweep retries", job.kind, job.pk
            )
            break  # the broker is down: the rest waits for the next sweep too
        queued += 1
    if queued:
        logger.warning("queued %d job(s) again that no worker had taken", queued)
    return queued
