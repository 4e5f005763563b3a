"""Celery tasks of the core: the sweep that queues again the jobs no worker took."""

from celery import shared_task

from reviewapp.core.jobs import jobs_queued_sweep


@shared_task(name="core.sweep_queued_jobs", acks_late=True, reject_on_worker_lost=True)
def sweep_queued_jobs() -> int:
    return jobs_queued_sweep()
