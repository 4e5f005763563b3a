"""Queues by kind: every task is routed to one of the five queues (a new task cannot land on the
default queue unnoticed), a worker started without -Q consumes them all, and the compose file's
worker services, started as compose starts them, consume every one between them."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.db import connection

from reviewapp.celery import app as celery_app
from reviewapp.monitoring.system import broker_queue_names
from tests.celery_queues import prefixed_env, prefixed_queues, queue_prefix

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"realtime", "batch", "challenger", "monitoring", "heavy"}


def registered_tasks() -> list[str]:
    celery_app.loader.import_default_modules()  # every app's tasks module, as a worker does
    return sorted(name for name in celery_app.tasks if not name.startswith("celery."))


def compose_workers() -> dict[str, list[str]]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return {
        name: service["command"]
        for name, service in services.items()
        if service.get("command", [])[3:4] == ["worker"]
    }


def consumed(command: list[str]) -> list[str]:
    """The queues a worker command names after -Q (none: every queue)."""
    return command[command.index("-Q") + 1].split(",") if "-Q" in command else []


def test_every_task_is_routed_to_one_of_the_five_queues():
    assert set(settings.TASK_QUEUE_KINDS) == KINDS
    queues = set(settings.TASK_QUEUES.values())
    unrouted = []
    for name in registered_tasks():
        queue = celery_app.amqp.router.route({}, name)["queue"].name
        if queue not in queues:
            unrouted.append(f"{name} -> {queue}")
    assert not unrouted, f"add these tasks to TASK_KINDS in reviewapp/settings.py: {unrouted}"
    # And no route names a task that no longer exists; every kind has work.
    assert set(settings.TASK_KINDS) == set(registered_tasks())
    assert set(settings.TASK_KINDS.values()) == KINDS


def test_each_kind_of_work_has_its_queue():
    def queue_of(task: str) -> str:
        return celery_app.amqp.router.route({}, task)["queue"].name

    assert queue_of("reviews.score_items") == settings.TASK_QUEUES["batch"]
    assert queue_of("reviews.score_challenger") == settings.TASK_QUEUES["challenger"]
    for task in ("deployments.run_backtest", "datasets.write_export", "datasets.retrain"):
        assert queue_of(task) == settings.TASK_QUEUES["heavy"], task
    for task in ("monitoring.fold_rollups", "deployments.watch_use_cases", "webhooks.sweep"):
        assert queue_of(task) == settings.TASK_QUEUES["monitoring"], task
    for task in ("webhooks.fanout", "webhooks.deliver"):
        assert queue_of(task) == settings.TASK_QUEUES["realtime"], task


def test_a_worker_without_q_consumes_every_queue():
    """What .ci/run's tests, the reliability harness, the benchmarks and a one-process
    deployment start: ``celery -A reviewapp worker`` with no -Q takes ``task_queues``."""
    names = {queue.name for queue in celery_app.conf.task_queues}
    assert names == {*settings.TASK_QUEUES.values(), settings.CELERY_TASK_DEFAULT_QUEUE}


@pytest.mark.django_db
def test_the_system_page_lists_every_routed_queue_even_with_no_worker_consuming_it():
    names = broker_queue_names()
    assert {*settings.TASK_QUEUES.values(), settings.CELERY_TASK_DEFAULT_QUEUE} <= set(names)


def test_the_compose_workers_consume_every_queue_between_them_and_the_beat_is_one():
    workers = compose_workers()
    assert len(workers) == 5
    named = [queue for command in workers.values() for queue in consumed(command)]
    assert sorted(named) == sorted([*KINDS, "celery"])  # each once, the default queue too
    for command in workers.values():
        assert "--concurrency" in command
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    # Heavy jobs one at a time, and never ahead of the others for the CPU.
    heavy = next(services[name] for name, c in workers.items() if consumed(c) == ["heavy"])
    assert heavy["command"][heavy["command"].index("--concurrency") + 1] == "1"
    assert heavy["cpu_shares"] < 1024
    beats = [s for s in services.values() if s.get("command", [])[3:4] == ["beat"]]
    assert len(beats) == 1 and "deploy" not in beats[0]


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_worker(command: list[str], *, prefix: str, node: str) -> subprocess.Popen:
    """``command`` as compose runs it, on the queues under ``prefix``: each -Q name gets the
    prefix, as the compose file says to do when TASK_QUEUE_PREFIX is set."""
    args = list(command[1:])  # the "celery" program: this interpreter's module
    if "-Q" in args:
        at = args.index("-Q") + 1
        args[at] = ",".join(f"{prefix}{queue}" for queue in args[at].split(","))
    if "--loglevel" in args:
        args[args.index("--loglevel") + 1] = "WARNING"
    args += ["--without-gossip", "--without-mingle", "-n", f"{node}@%h"]
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CONN_MAX_AGE": "0",
        **prefixed_env(prefix),
    }
    return subprocess.Popen([sys.executable, "-m", "celery", *args], cwd=ROOT, env=env)


def active_queues(nodes: list[str], processes: list[subprocess.Popen]) -> dict[str, list[str]]:
    """Each node's consumed queues, as the node itself reports them over the broker."""
    host = os.uname().nodename
    destination = [f"{node}@{host}" for node in nodes]
    deadline = time.monotonic() + 90
    while True:
        replies = celery_app.control.inspect(destination=destination, timeout=2).active_queues()
        if replies and len(replies) == len(nodes):
            return {
                name.split("@")[0]: sorted(q["name"] for q in queues)
                for name, queues in replies.items()
            }
        assert all(p.poll() is None for p in processes), "a worker exited"
        assert time.monotonic() < deadline, f"workers did not answer: {replies}"


@pytest.mark.postgres
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.xdist_group("celery-worker")
def test_real_workers_started_as_ci_and_compose_start_them_consume_every_queue():
    prefix = queue_prefix()
    plain = ["celery", "-A", "reviewapp", "worker", "--concurrency", "1"]
    commands = {f"{prefix}plain": plain} | {
        f"{prefix}{service}": command for service, command in compose_workers().items()
    }
    processes = [
        start_worker(command, prefix=prefix, node=node) for node, command in commands.items()
    ]
    try:
        queues = active_queues(list(commands), processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    everything = prefixed_queues(prefix)
    assert queues.pop(f"{prefix}plain") == everything
    assert sorted(q for consumed_by_one in queues.values() for q in consumed_by_one) == everything
