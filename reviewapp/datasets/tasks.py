"""Celery tasks: thin, keyword ids in, one idempotent service call each.

Neither retries by itself: a failure is recorded on the export or run with its reason, and
starting again is the user's call. A worker lost mid-way redelivers the task (acks_late), and
the service starts over cleanly.
"""

from celery import shared_task

from reviewapp.datasets.services.exports import export_write
from reviewapp.datasets.services.retraining import training_run_execute


@shared_task(name="datasets.write_export", acks_late=True, reject_on_worker_lost=True)
def write_export(*, export_id: str) -> str:
    return export_write(export_id=export_id).state


@shared_task(name="datasets.retrain", acks_late=True, reject_on_worker_lost=True)
def retrain(*, training_run_id: str) -> str:
    return training_run_execute(run_id=training_run_id).state
