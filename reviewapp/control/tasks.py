"""Celery tasks of the control room: thin, keyword ids in, one idempotent service call each."""

from celery import shared_task
from django.db import DatabaseError

from reviewapp.control.backtests import backtest_run
from reviewapp.control.guardrail_watch import use_case_watch, use_cases_watch_all

RETRY = {
    "autoretry_for": (DatabaseError, ConnectionError),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 8,
}


@shared_task(name="deployments.watch_use_case", acks_late=True, reject_on_worker_lost=True, **RETRY)
def watch_use_case(*, use_case_id: int) -> None:
    use_case_watch(use_case_id=use_case_id)


@shared_task(name="deployments.watch_use_cases", acks_late=True, reject_on_worker_lost=True)
def watch_use_cases() -> int:
    return use_cases_watch_all()


@shared_task(name="deployments.run_backtest", acks_late=True, reject_on_worker_lost=True)
def run_backtest(*, job_id: str) -> None:
    backtest_run(job_id=job_id)
