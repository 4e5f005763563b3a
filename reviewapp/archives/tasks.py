"""Celery task: the daily archive of history past each use case's retention."""

from celery import shared_task
from django.conf import settings

from reviewapp.archives.services import archives_due
from reviewapp.core.embedded import AfterResponse


@shared_task(name="archives.archive_due", acks_late=True, reject_on_worker_lost=True)
def archive_due() -> int:
    return len(archives_due())


# Embedded mode (eager tasks, no beat): the web process runs it after a response, once a day.
embedded_archive = AfterResponse(
    archive_due, seconds=lambda: settings.ARCHIVE_EMBEDDED_SECONDS, what="history archive"
)
