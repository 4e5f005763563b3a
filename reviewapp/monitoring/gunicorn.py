"""Gunicorn hooks for Prometheus multiprocess mode.

Run gunicorn with ``--config python:reviewapp.monitoring.gunicorn``.
Each worker writes its request-latency samples to files in ``PROMETHEUS_MULTIPROC_DIR``; the
directory is emptied when the server starts (stale files would resurrect old counts) and a
dead worker's live gauges are dropped.
"""

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
