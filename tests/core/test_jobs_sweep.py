"""Work queued as a job whose task never reached a worker (the broker was down at commit, or
lost the message) is queued again by the sweep, and runs once however often it is queued."""

from datetime import timedelta

import pytest
from django.utils import timezone

from reviewapp.core.jobs import job_claim, jobs_queued_sweep
from reviewapp.core.models import Job
from reviewapp.datasets.models import Export
from reviewapp.datasets.services.exports import export_start, export_write
from tests.datasets.conftest import build_world

pytestmark = pytest.mark.django_db


def _export_whose_publish_was_lost(world, django_capture_on_commit_callbacks) -> Export:
    # The commit's callbacks are dropped: what a broker down at that moment amounts to.
    with django_capture_on_commit_callbacks(execute=False):
        export = export_start(use_case=world.use_case, actor=world.analyst, fmt="csv")
    assert Export.objects.get(pk=export.pk).state == Export.State.QUEUED
    return export


def test_an_export_whose_task_was_lost_is_written_by_the_next_sweep(
    settings, django_capture_on_commit_callbacks
):
    settings.SWEEPER_INTERVAL_SECONDS = 30
    world = build_world()
    export = _export_whose_publish_was_lost(world, django_capture_on_commit_callbacks)

    # Within one interval the task may still be on its way: nothing is queued twice.
    assert jobs_queued_sweep() == 0
    assert Export.objects.get(pk=export.pk).state == Export.State.QUEUED

    later = timezone.now() + timedelta(seconds=31)
    assert jobs_queued_sweep(now=later) == 1  # eager here: the sweep's task runs in process
    export.refresh_from_db()
    assert export.state == Export.State.READY and export.row_count > 0
    assert Job.objects.get(pk=export.job_id).state == Job.State.DONE
    assert jobs_queued_sweep(now=later) == 0


def test_a_job_runs_once_however_often_it_is_queued(django_capture_on_commit_callbacks):
    world = build_world()
    export = _export_whose_publish_was_lost(world, django_capture_on_commit_callbacks)
    now = timezone.now()
    assert job_claim(job_id=export.job_id, now=now)  # the first run takes it
    # A second message for the same export (a sweep, a redelivery) finds it taken.
    assert not job_claim(job_id=export.job_id, now=now + timedelta(seconds=5))
    assert export_write(export_id=export.pk).state == Export.State.QUEUED
    assert not Export.objects.get(pk=export.pk).file_name


def test_a_run_whose_worker_was_lost_is_taken_over_after_the_time_limit(
    settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_TIME_LIMIT = 600
    world = build_world()
    export = _export_whose_publish_was_lost(world, django_capture_on_commit_callbacks)
    started = timezone.now() - timedelta(seconds=3600)
    assert job_claim(job_id=export.job_id, now=started)  # a worker took it, then was lost
    assert jobs_queued_sweep() == 1
    assert Export.objects.get(pk=export.pk).state == Export.State.READY
