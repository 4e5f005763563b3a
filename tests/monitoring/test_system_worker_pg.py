"""A real Celery worker reports itself on PostgreSQL and is marked gone once killed; the broker's
queue lengths are read from a real Redis holding messages."""

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from reviewapp.celery import app as celery_app
from reviewapp.monitoring.models import ProcessHeartbeat, SystemAlert
from reviewapp.monitoring.system import (
    broker_queue_names,
    broker_queues,
    health_read,
    system_watch,
)
from tests.celery_queues import prefixed_env, prefixed_queues, queue_prefix

ROOT = Path(__file__).resolve().parents[2]
# Messages are published to queues no worker consumes, whatever the eager setting says.
pytestmark = pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(predicate, *, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (result := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return result


@pytest.mark.postgres
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.xdist_group("celery-worker")
def test_a_real_workers_heartbeats_appear_and_expire_when_it_is_killed(settings):
    prefix = queue_prefix()
    node = f"{prefix}worker@{os.uname().nodename}"  # -n below, with %h the host's name
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        **prefixed_env(prefix),
        "CONN_MAX_AGE": "0",
        "HEARTBEAT_INTERVAL_SECONDS": "0.5",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "reviewapp", "worker"]
        + ["--concurrency", "2", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
        + ["-n", f"{prefix}worker@%h"],
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own process group: killed with its pool below
    )
    try:
        # The main process and its two pool processes each report, under the node's name.
        rows = wait_for(
            lambda: (
                list(ProcessHeartbeat.objects.filter(name=node))
                if (ProcessHeartbeat.objects.filter(name=node).count() >= 3)
                else None
            ),
            seconds=60,
            what="the worker's heartbeats did not appear",
        )
        assert process.poll() is None
        assert {r.kind for r in rows} == {"worker"}
        # No -Q: every queue of its prefix, each listed with its length on the System page.
        assert all(r.queues == prefixed_queues(prefix) for r in rows)
        assert set(prefixed_queues(prefix)) <= set(broker_queue_names())
        assert process.pid in {r.pid for r in rows}
        assert all(r.rss_bytes > 0 and r.host_memory_total_bytes > 0 for r in rows)
        assert node in health_read(now=timezone.now(), with_broker=False).workers
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # no clean shutdown: the rows stay behind
        process.wait(timeout=30)

    last_seen = max(ProcessHeartbeat.objects.filter(name=node).values_list("seen_at", flat=True))
    later = last_seen + timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 1)
    assert node not in health_read(now=later, with_broker=False).workers
    result = system_watch(now=later)
    assert result["gone"] == len(rows)
    assert ProcessHeartbeat.objects.filter(name=node, gone_at=later).count() == len(rows)
    missing = SystemAlert.objects.filter(kind="process_missing", cleared_at__isnull=True)
    assert missing.count() == len(rows) and node in missing.first().message

    forget = last_seen + timedelta(seconds=settings.HEARTBEAT_FORGET_SECONDS + 1)
    system_watch(now=forget)
    assert not ProcessHeartbeat.objects.filter(name=node).exists()
    assert not SystemAlert.objects.filter(kind="process_missing", cleared_at__isnull=True).exists()


@pytest.mark.worker
def test_broker_queue_lengths_and_oldest_age_are_read_from_redis():
    queue = f"held-{uuid.uuid4().hex[:8]}"
    before = time.time()
    with celery_app.connection_for_write() as conn:
        for _n in range(5):
            celery_app.send_task("monitoring.fold_rollups", queue=queue, connection=conn)
        celery_app.send_task("monitoring.fold_rollups", queue=queue, priority=9, connection=conn)
    try:
        now = timezone.now() + timedelta(seconds=120)
        (state,) = broker_queues(now=now, names=[queue])
        assert state.name == queue and state.length == 6
        expected = now.timestamp() - before
        assert expected - 5 < state.oldest_age_seconds <= expected
        (empty,) = broker_queues(now=now, names=[f"{queue}-none"])
        assert (empty.length, empty.oldest_age_seconds) == (0, None)
    finally:
        import redis

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        client.delete(queue, *[f"{queue}\x06\x16{p}" for p in (3, 6, 9)])
        client.close()


@pytest.mark.worker
@pytest.mark.django_db
def test_a_queue_nobody_consumes_raises_a_banner_and_is_exported(settings, client):
    from reviewapp.core.roles import Role
    from tests.factories import make_user

    queue = f"stuck-{uuid.uuid4().hex[:8]}"
    settings.SYSTEM_BROKER_QUEUES = [queue]
    settings.SYSTEM_QUEUE_STALL_SECONDS = -1  # any waiting message counts as stalled
    celery_app.send_task("monitoring.fold_rollups", queue=queue)
    try:
        client.force_login(make_user(Role.MANAGER))
        page = client.get("/monitoring/system/").content.decode()
        assert f"Queue {queue}: 1 message, the oldest waiting" in page
        metrics = client.get("/metrics").content.decode()
        assert f'reviewapp_celery_queue_length{{queue="{queue}"}} 1.0' in metrics
    finally:
        import redis

        redis_client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        redis_client.delete(queue)
        redis_client.close()
