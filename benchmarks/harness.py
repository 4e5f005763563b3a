"""Shared pieces for the benchmarks: a fresh PostgreSQL database, real server and worker
processes, timing helpers and the table printer."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/reviewapp_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/13"
# A gunicorn started with FLOOR_ENV also serves the floors' views (benchmarks/floor_urls.py):
# BARE_AUTHENTICATED_API is a bare DRF view behind the app's token authentication.
FLOOR_ENV = {"DJANGO_SETTINGS_MODULE": "benchmarks.floor_settings"}
BARE_AUTHENTICATED_API = "__floor__/api/"


def server_env() -> dict[str, str]:
    """The environment of a production-like process on the benchmark database."""
    return {
        **os.environ,
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER_URL),
        "DEBUG": "0",
        "SECRET_KEY": "benchmark-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
    }


# A database run.py migrated and nobody writes to: a benchmark's throwaway database is a copy
# of it (CREATE DATABASE ... TEMPLATE, under a second) instead of a migrate of its own.
MIGRATED_TEMPLATE_ENV = "BENCH_MIGRATED_TEMPLATE"


def test_database_create() -> str:
    """Point the default connection at a throwaway test database (``test_<name>``) with the
    schema migrated; return the name to give ``destroy_test_db``. Under run.py on PostgreSQL,
    a copy of its migrated template; otherwise Django's ``create_test_db``."""
    from django.conf import settings
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    template = os.environ.get(MIGRATED_TEMPLATE_ENV)
    if not template or connection.vendor != "postgresql":
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        return old_name
    test_name = connection.creation._get_test_db_name()
    quote = connection.ops.quote_name
    connection.close()
    with connection.creation._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quote(test_name)} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {quote(test_name)} TEMPLATE {quote(template)}")
    settings.DATABASES[connection.alias]["NAME"] = test_name
    connection.settings_dict["NAME"] = test_name
    connection.ensure_connection()
    return old_name


def test_environment_setup(*, debug: bool | None = None) -> None:
    """Django's test environment (the test client's host allowed, mail kept in memory), but
    templates rendered as a server renders them. The test environment wraps every render to
    send a signal, which the test client answers by copying the template's context for
    ``response.context``: no server pays that, and the benchmarks read no context. On the
    queue's decide + next it was 0.4 ms of 11 a round trip, and the floor renders no template.
    ``debug`` as ``setup_test_environment`` takes it; undone by ``teardown_test_environment``."""
    from django.template import Template
    from django.test.utils import setup_test_environment

    served = Template._render
    setup_test_environment(debug=debug)
    Template._render = served


@contextlib.contextmanager
def throwaway_database(*, debug: bool | None = None):
    """Django's test environment (``test_environment_setup``) on a throwaway database
    (``test_database_create``), dropped on the way out whatever happens."""
    from django.db import connection
    from django.test.utils import teardown_test_environment

    test_environment_setup(debug=debug)
    old_name = test_database_create()
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(*, workers: int = 2, threads: int = 4, config: str | None = None, env=None):
    """A real gunicorn serving the app; yields its base URL. ``config``: gunicorn's
    ``--config`` (``python:reviewapp.monitoring.gunicorn``: the hooks docker-compose.yml runs);
    ``env``: variables over ``server_env()``."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "reviewapp.wsgi:application",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            "-k",
            "gthread",
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            *(["--config", config] if config else []),
        ],
        cwd=ROOT,
        env={**server_env(), **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def celery_workers(*, concurrency: int = 2, queues: list[str] | None = None):
    """Real Celery worker processes on the benchmark's own Redis database (emptied first);
    ``queues``: those named after -Q (default: every queue). Yields the main process."""
    import redis

    from reviewapp.celery import app

    env = server_env()
    redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
    name = f"bench-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "reviewapp",
            "worker",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"{name}@%h",
            *(["-Q", ",".join(queues)] if queues else []),
        ],
        cwd=ROOT,
        env=env,
    )
    app.conf.task_always_eager = False
    app.conf.broker_url = env["CELERY_BROKER_URL"]
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[f"{name}@{socket.gethostname()}"], timeout=1):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not start")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


def server_ms(response) -> float:
    """The server's own time for a request, from its Server-Timing header."""
    header = response.headers["Server-Timing"]
    return float(header.split("dur=")[1])


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def table(title: str, headers: list[str], rows: list[list]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"
