"""A real Celery worker on Redis takes a batch end to end (PostgreSQL, committed data)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count

from reviewapp.celery import app as celery_app
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item, Prediction
from tests.celery_queues import prefixed_env, queue_prefix, queues_prefixed
from tests.factories import classifier_bytes, invoice, make_use_case, make_user, register_model

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("celery-worker"),
]


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(request):
    """A Celery worker process on queues of its own, reading this test's database. Started as
    .ci/run's tests and a single-process deployment start one (no ``-Q``): it consumes every
    queue under its prefix. A test's indirect parameter sets more of its environment (the pool's
    size as ``CONCURRENCY``)."""
    prefix = queue_prefix()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        # Tasks the worker queues itself (a webhook after a breach) stay on the test's queues.
        **prefixed_env(prefix),
        "CONN_MAX_AGE": "0",
        **getattr(request, "param", {}),
    }
    node = f"{prefix}worker"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "reviewapp",
            "worker",
            "--concurrency",
            env.get("CONCURRENCY", "2"),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"{node}@%h",
        ],
        cwd=ROOT,
        env=env,
    )
    celery_app.conf.task_always_eager = False
    try:
        with queues_prefixed(prefix):
            deadline = time.monotonic() + 60
            while not celery_app.control.ping(
                destination=[f"{node}@{os.uname().nodename}"], timeout=1
            ):
                assert process.poll() is None, "the worker exited"
                assert time.monotonic() < deadline, "the worker did not start"
            yield process
    finally:
        celery_app.conf.task_always_eager = True
        process.terminate()
        try:
            # A warm shutdown waits for the tasks in hand; on a loaded machine that has taken
            # more than 30 s. The test's assertions are done: a worker still stopping is killed.
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def test_a_real_worker_scores_and_routes_a_batch_of_1000_exactly_once(api, worker):
    caller = make_user(Role.INTEGRATION)
    use_case = make_use_case(
        members=[caller], level="partial", confidence_threshold=0.8, traffic_percent=50
    )
    register_model(use_case, classifier_bytes())
    job = _batch_done(api, caller, use_case, range(1000))
    assert job["done"] == job["total"] == 1000
    assert Item.objects.filter(use_case=use_case, status="pending").count() == 0
    assert Prediction.objects.filter(use_case=use_case).count() == 1000
    per_item = Prediction.objects.values("item").annotate(n=Count("id")).filter(n__gt=1)
    assert not per_item.exists()
    routes = dict(Item.objects.values_list("route").annotate(n=Count("id")))
    assert sum(routes.values()) == 1000 and routes.get("auto", 0) > 0


def _batch_done(api, caller, use_case, numbers: range) -> dict:
    """POST the invoices ``numbers`` as one batch; return its job once it is done."""
    response = api(caller).post(
        f"/api/v1/use-cases/{use_case.slug}/items/batch/",
        {"items": [invoice(n) for n in numbers]},
        format="json",
    )
    assert response.status_code == 202, response.content
    job_url = f"/api/v1/jobs/{response.json()['job']}/"
    deadline = time.monotonic() + 120
    while (job := api(caller).get(job_url).json())["state"] != "done":
        assert job["state"] != "failed", job
        assert time.monotonic() < deadline, job
        time.sleep(0.25)
    return job


def _other_backends() -> set[int]:
    """The PostgreSQL sessions open on this test's database other than the test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return {pid for (pid,) in cursor.fetchall()}


@pytest.mark.parametrize(
    "worker",
    [
        {
            "CONN_MAX_AGE": "60",
            "CONCURRENCY": "1",
            "BATCH_CHUNK_SIZE": "40",
            "HEARTBEAT_INTERVAL_SECONDS": "0",
        }
    ],
    indirect=True,
)
def test_a_worker_keeps_its_database_connection_across_tasks_and_replaces_one_that_was_dropped(
    api, worker
):
    """Each task used to open a new PostgreSQL session (a new server process, its catalog
    loaded again, its prepared statements lost). Now the connection lives ``CONN_MAX_AGE``, as
    a web process's does; when the database drops it while idle (a restart, a failover, an
    idle timeout), the next task runs on a new one instead of failing."""
    caller = make_user(Role.INTEGRATION)
    use_case = make_use_case(members=[caller], level="partial", confidence_threshold=0.8)
    register_model(use_case, classifier_bytes())
    _batch_done(api, caller, use_case, range(0, 120))  # three chunks, and what follows them
    kept = _other_backends()
    assert len(kept) == 1, kept  # the pool's one process holds one connection, still open

    _batch_done(api, caller, use_case, range(120, 240))
    assert _other_backends() == kept  # the same session served the next tasks

    [dropped] = kept
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [dropped])
    _batch_done(api, caller, use_case, range(240, 360))
    assert Item.objects.filter(use_case=use_case, status="pending").count() == 0
    assert Prediction.objects.filter(use_case=use_case).count() == 360
    replaced = _other_backends()
    assert len(replaced) == 1 and dropped not in replaced
