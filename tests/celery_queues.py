"""Queues of their own for a test that starts a real Celery worker: parallel tests share one
broker, and a worker must never take another test's tasks.

A worker started with ``TASK_QUEUE_PREFIX=<prefix>`` in its environment (and no ``-Q``)
consumes ``<prefix>realtime`` ... ``<prefix>heavy`` and ``<prefix>celery``, and routes the tasks
it queues itself there; ``queues_prefixed`` makes this process send its tasks there too.
"""

import contextlib
import uuid
from collections.abc import Iterator

from django.conf import settings

from reviewapp.celery import app as celery_app


def queue_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}-"


def prefixed_env(prefix: str) -> dict[str, str]:
    """What a worker's environment needs to use the queues under ``prefix``."""
    return {"TASK_QUEUE_PREFIX": prefix, "CELERY_TASK_DEFAULT_QUEUE": f"{prefix}celery"}


def prefixed_queues(prefix: str) -> list[str]:
    """Every queue a worker started with ``prefixed_env(prefix)`` and no ``-Q`` consumes."""
    return sorted([*(f"{prefix}{kind}" for kind in settings.TASK_QUEUE_KINDS), f"{prefix}celery"])


@contextlib.contextmanager
def queues_prefixed(prefix: str) -> Iterator[None]:
    """Tasks sent from this process go to the queues under ``prefix`` (as the worker's own)."""
    conf = celery_app.conf
    previous = {"task_routes": conf.task_routes, "task_default_queue": conf.task_default_queue}
    conf.update(
        task_routes={
            task: {"queue": f"{prefix}{kind}"} for task, kind in settings.TASK_KINDS.items()
        },
        task_default_queue=f"{prefix}celery",
    )
    try:
        yield
    finally:
        conf.update(**previous)
