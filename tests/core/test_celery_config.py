"""The Celery settings that make a killed worker lose nothing: a task is acknowledged only once
done, handed back when its worker dies, never hoarded, and not redelivered while still running."""

from django.conf import settings

from reviewapp.celery import app
from reviewapp.reviews.tasks import score_challenger, score_items, sweep_unscored_items


def test_tasks_are_acknowledged_late_and_requeued_when_the_worker_dies():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    for task in (score_items, score_challenger, sweep_unscored_items):
        assert task.acks_late is True
        assert task.reject_on_worker_lost is True


def test_a_worker_takes_one_task_at_a_time():
    assert app.conf.worker_prefetch_multiplier == 1


def test_the_broker_redelivers_only_after_the_longest_task_could_have_run():
    time_limit = app.conf.task_time_limit
    assert time_limit and app.conf.task_soft_time_limit < time_limit
    assert app.conf.broker_transport_options["visibility_timeout"] > time_limit


def test_the_sweeper_runs_periodically_at_the_configured_interval():
    entry = app.conf.beat_schedule["sweep-unscored-items"]
    assert entry["task"] == sweep_unscored_items.name
    assert entry["schedule"] == settings.SWEEPER_INTERVAL_SECONDS
