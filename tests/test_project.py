"""The project's set-up: environment-driven settings, Celery's delivery guarantees, the
docker-compose stack."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def settings_in_subprocess(env: dict) -> dict:
    code = (
        "import json, django, os; os.environ['DJANGO_SETTINGS_MODULE']='reviewapp.settings';"
        "from django.conf import settings as s;"
        "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'],"
        " 'eager': s.CELERY_TASK_ALWAYS_EAGER, 'debug': s.DEBUG,"
        " 'journal': s.DATABASES['default'].get('OPTIONS', {}).get('init_command', ''),"
        " 'transport': getattr(s, 'CELERY_BROKER_TRANSPORT', None)}))"
    )
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DEBUG", "SECRET_KEY"}
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode:
        return {"error": result.stderr}
    return json.loads(result.stdout)


def test_with_nothing_set_it_runs_embedded_on_sqlite_wal_with_eager_tasks():
    found = settings_in_subprocess({})
    assert found["engine"] == "django.db.backends.sqlite3"
    assert "journal_mode=WAL" in found["journal"]
    assert found["eager"] is True
    assert found["transport"] is None  # eager tasks publish to kombu's in-memory transport


def test_database_and_broker_urls_switch_to_postgres_and_workers():
    found = settings_in_subprocess(
        {
            "DATABASE_URL": "postgres://u@127.0.0.1:5432/x",
            "CELERY_BROKER_URL": "redis://x:6379/0",
        }
    )
    assert found["engine"] == "django.db.backends.postgresql"
    assert found["eager"] is False
    # kombu's Redis transport, but an ack a hung Redis never answers frees its prefetch slot.
    assert found["transport"] == "reviewapp.celery:RedisTransport"


def test_production_refuses_to_start_without_a_real_secret_key():
    found = settings_in_subprocess({"DEBUG": "0"})
    assert "SECRET_KEY must be set" in found["error"]
    ok = settings_in_subprocess({"DEBUG": "0", "SECRET_KEY": "k" * 50})
    assert ok["debug"] is False


def test_celery_delivers_at_least_once_and_never_twice_concurrently():
    from django.conf import settings

    from reviewapp.celery import app

    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert "sweep-unscored-items" in settings.CELERY_BEAT_SCHEDULE
    from reviewapp.reviews import tasks

    for task in (tasks.score_items, tasks.score_challenger):
        assert task.acks_late and task.reject_on_worker_lost


def test_compose_runs_the_full_stack_with_health_checks():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    workers = [name for name in services if name.startswith("worker-")]
    assert len(workers) == 5  # one per queue (tests/test_celery_queues.py)
    for name in ("postgres", "redis", "web", *workers, "beat"):
        assert name in services, name
        assert "healthcheck" in services[name], name
    assert services["web"]["command"][0] == "gunicorn"
    module, attribute = services["web"]["command"][1].split(":")
    assert hasattr(importlib.import_module(module), attribute)
    for name in (*workers, "beat"):
        command = services[name]["command"]
        assert command[:3] == ["celery", "-A", "reviewapp"]
        assert importlib.import_module("reviewapp").celery_app.main == "reviewapp"
    migrate = services["migrate"]["command"]
    assert migrate[:3] == ["python", "manage.py", "migrate"] and (ROOT / "manage.py").exists()
    assert "/healthz" in json.dumps(services["web"]["healthcheck"])


@pytest.mark.django_db
def test_healthz_answers(client):
    assert client.get("/healthz").json() == {"ok": True}


def test_flower_is_for_operators_only():
    """Flower can revoke tasks and stop pools: an opt-in profile, behind a password, local."""
    flower = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["flower"]
    assert flower["profiles"] == ["ops"]
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])
    assert flower["environment"] == {"FLOWER_BASIC_AUTH": "${FLOWER_BASIC_AUTH:-}"}


def _flower_starts(tmp_path, password: str) -> subprocess.CompletedProcess:
    """Flower's command as the container runs it (compose turns ``$$`` into ``$``), with a
    stand-in ``celery`` on the PATH that prints the arguments it was given."""
    flower = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["flower"]
    shell, flag, script = flower["command"]
    stand_in = tmp_path / "celery"
    stand_in.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stand_in.chmod(0o755)
    return subprocess.run(
        [shell, flag, script.replace("$$", "$")],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "FLOWER_BASIC_AUTH": password},
        capture_output=True,
        text=True,
        check=False,
    )


def test_flower_refuses_to_start_without_a_password_and_uses_the_one_given(tmp_path):
    refused = _flower_starts(tmp_path, "")
    assert refused.returncode == 1
    assert "set FLOWER_BASIC_AUTH" in refused.stderr
    started = _flower_starts(tmp_path, "ops:s3cret with space")
    assert started.returncode == 0
    assert "--basic-auth=ops:s3cret with space" in started.stdout.splitlines()
    assert "flower" in started.stdout.splitlines()


def test_plain_docker_compose_up_needs_no_variable_but_the_secret_key():
    """Compose interpolates the whole file before it looks at profiles: a required variable
    anywhere stops every `docker compose up`, so only the app's SECRET_KEY may be one."""
    text = (ROOT / "docker-compose.yml").read_text()
    required = {
        line.split("${", 1)[1].split(":?", 1)[0] for line in text.splitlines() if ":?" in line
    }
    assert required == {"SECRET_KEY"}
