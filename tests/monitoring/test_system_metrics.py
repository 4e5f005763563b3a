"""/metrics exports every process of the app from the heartbeat table, whichever process
answers: parsed with prometheus_client's parser, named by Prometheus' conventions."""

import os
import re
import shutil
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from reviewapp.core.roles import Role
from reviewapp.monitoring.models import ProcessHeartbeat
from tests.factories import make_user
from tests.monitoring.system_seed import fleet_seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_SCRAPE_TOKEN = "s" * 40

    def get() -> str:
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "s" * 40)
        assert response.status_code == 200
        return response.content.decode()

    return get


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(family, **labels) -> float:
    (sample,) = [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]
    return sample.value


def test_every_process_on_every_host_is_exported(scrape, settings):
    now = timezone.now()
    fleet_seed(now=now, web=3, workers=2, hosts=2, minutes=3)
    ProcessHeartbeat.objects.filter(pid=1004).update(
        seen_at=now - timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 5)
    )
    found = families(scrape())
    up = found["reviewapp_process_up"]
    assert len(up.samples) == 6
    assert value(up, pid="1004", kind="worker", host="app-1") == 0
    assert value(up, pid="1000", kind="web") == 1
    memory = found["reviewapp_process_resident_memory_bytes"]
    assert value(memory, pid="1003") == 260 * 1024 * 1024
    assert found["reviewapp_process_cpu_seconds"].type == "counter"
    assert value(found["reviewapp_process_cpu_seconds"], pid="1000") == 3 * 6.0
    assert value(found["reviewapp_celery_workers"]) == 1  # celery@app-1 went silent
    assert value(found["reviewapp_processes"], kind="web", host="app-1") == 2
    responses = found["reviewapp_http_responses"]
    assert value(responses, pid="1001", status="5xx") == 1
    assert value(responses, pid="1001", status="4xx") == 3
    assert value(found["reviewapp_host_load_average"], host="app-2", period="15m") == 0.8
    assert value(found["reviewapp_system_alerts"], kind="process_missing") == 1
    sweeper = found["reviewapp_task_last_run_timestamp_seconds"]
    assert abs(value(sweeper, task="reviews.sweep_unscored_items") - now.timestamp() + 40) < 1


def test_a_user_scrape_sees_the_processes_too(client):
    fleet_seed(now=timezone.now(), web=1, workers=1, minutes=1)
    client.force_login(make_user(Role.MANAGER))
    assert "reviewapp_process_up{" in client.get("/metrics").content.decode()


def test_names_follow_prometheus_conventions(scrape):
    fleet_seed(now=timezone.now(), web=1, workers=1, minutes=1)
    text = scrape()
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("reviewapp_"):
            continue  # the client library's own (python_gc_..., process_...)
        assert re.fullmatch(r"reviewapp_[a-z0-9_]+", family.name)
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        assert not re.search(r"_(mb|kb|ms|percent|minutes)$", family.name), family.name
    if shutil.which("promtool") is None:
        if os.environ.get("REQUIRE_PROMTOOL") == "1":
            pytest.fail("REQUIRE_PROMTOOL=1 but promtool is not installed")
        pytest.skip("promtool is not installed: the names were checked by the rules above only")
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
