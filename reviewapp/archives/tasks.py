"""Celery task: the daily archive of history past each use case's retention."""

from celery import shared_task

from reviewapp.archives.services import archives_due


@shared_task(name="archives.archive_due", acks_late=True, reject_on_worker_lost=True)
def archive_due() -> int:
    return len(archives_due())
