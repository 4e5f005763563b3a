"""Gunicorn hooks: Prometheus multiprocess mode and each worker's heartbeat.

Run gunicorn with ``--config python:reviewapp.monitoring.gunicorn``.
Each worker writes its request-latency samples to files in ``PROMETHEUS_MULTIPROC_DIR``; the
directory is emptied when the server starts (stale files would resurrect old counts) and a
dead worker's live gauges are dropped. Each worker starts its heartbeat as soon as it is forked
(an idle worker is alive too) and removes it when it exits cleanly, and with
``SCORING_WARM_ON_START`` loads the champions before it serves (see the setting).
"""

import logging
import os
import shutil
from pathlib import Path


def on_starting(server) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
    django.setup()
    from reviewapp.monitoring.heartbeats import process_start

    process_start(kind="web", name="gunicorn")
    from django.conf import settings

    if settings.SCORING_WARM_ON_START:
        champions_warm_before_serving(worker)


def champions_warm_before_serving(worker) -> None:
    """Import every view and load the champions before the worker takes its first request.

    Not on a thread beside the first requests: two threads importing the same libraries at once
    can meet Python's import lock the other way round, and the request got a ``_DeadlockError``
    (a 500). Each champion loaded tells the master the worker is alive, so a slow start is not
    taken for a hung worker and killed.
    """
    from django.db import connection
    from django.urls import get_resolver

    from deployments.services.estimators import champions_warm

    try:
        get_resolver().url_patterns  # noqa: B018 - imports every view, as a first request would
        champions_warm(progress=getattr(worker, "notify", None))
    except Exception:  # a database away at start: the first item loads its champion instead
        logging.getLogger(__name__).exception("champions not loaded at start")
    finally:
        if not connection.in_atomic_block:  # never under a caller's transaction (a test's)
            connection.close()  # requests open their own


def worker_exit(server, worker) -> None:
    from reviewapp.monitoring.heartbeats import process_stop

    process_stop()
