"""Services for jobs: create one, report progress, finish or fail it."""

from typing import Any

from django.db.models import F, Value
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from reviewapp.core.models import Job


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
    """``job_start`` for many jobs in one statement (``job_ids`` may be a subquery)."""
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
