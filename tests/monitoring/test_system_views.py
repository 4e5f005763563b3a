"""The System page and the Software tab's process figures, as a manager reads them."""

from datetime import timedelta

import pytest
from django.utils import timezone

from reviewapp.core.roles import Role
from reviewapp.monitoring.models import ProcessHeartbeat
from tests.factories import make_use_case, make_user
from tests.monitoring.system_seed import fleet_seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager_client(client):
    manager = make_user(Role.MANAGER)
    client.force_login(manager)
    client.user = manager
    return client


def test_the_system_page_shows_every_process_host_chart_and_view(manager_client):
    fleet_seed(now=timezone.now(), web=3, workers=2, minutes=90)
    response = manager_client.get("/monitoring/system/")
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count("<td>gunicorn</td>") == 3 and "celery@app-1" in page
    assert "app-1" in page and "app-2" in page
    for key in ("memory", "cpu", "load", "requests", "request-latency", "tasks"):
        assert f'data-figure="fig-{key}"' in page, key
    assert "reviews:queue" in page and "api-items" in page  # the view table
    health = response.context["health"]
    assert health.workers == ["celery@app-1", "celery@app-2"] and health.tasks_in_flight == 2
    assert "Needs attention" not in page  # eager tasks, all live, few errors


def test_a_silent_worker_shows_as_gone_with_a_banner(manager_client, settings):
    now = timezone.now()
    fleet_seed(now=now, web=1, workers=2, minutes=5)
    ProcessHeartbeat.objects.filter(name="celery@app-1").update(
        seen_at=now - timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 60)
    )
    page = manager_client.get("/monitoring/system/").content.decode()
    assert "Needs attention" in page and "celery@app-1" in page and "stopped reporting" in page
    assert '<strong class="bad">gone</strong>' in page


def test_no_worker_at_all_is_a_banner_when_tasks_go_to_a_broker(manager_client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = ""  # nothing to read, but a worker is expected
    page = manager_client.get("/monitoring/system/").content.decode()
    assert "No Celery worker is reporting" in page


def test_a_range_out_of_the_list_is_refused_naming_the_field(manager_client):
    response = manager_client.get("/monitoring/system/?range=5y")
    assert response.status_code == 400
    assert (
        "<strong>range</strong>: must be one of 1h, 6h, 24h, 7d, 30d" in response.content.decode()
    )


def test_the_range_changes_the_bucket(manager_client):
    fleet_seed(now=timezone.now(), web=1, workers=1, minutes=60)
    hourly = manager_client.get("/monitoring/system/?range=1h", HTTP_HX_REQUEST="true")
    assert hourly.status_code == 200
    assert "<html" not in hourly.content.decode()  # the panel alone for htmx
    assert "per 1 min" in hourly.content.decode()
    assert "per 15 min" in manager_client.get("/monitoring/system/").content.decode()


def test_the_software_tab_shows_the_processes_and_links_the_system_page(manager_client):
    fleet_seed(now=timezone.now(), web=2, workers=1, minutes=5)
    use_case = make_use_case(members=[manager_client.user], slug="invoices")
    page = manager_client.get(f"/monitoring/{use_case.slug}/software/").content.decode()
    assert "Web processes" in page and "Celery workers" in page and "Broker messages" in page
    assert 'href="/monitoring/system/"' in page
    # Everything the System page draws, over the last 24 hours.
    for key in ("memory", "cpu", "load", "requests", "request-latency", "tasks"):
        assert f'data-figure="fig-process-{key}"' in page, key
    assert "Sweeper last ran" in page and "Rollups last folded" in page
    assert "Broker queues" in page
    assert "Requests by view" in page and "reviews:queue" in page and "api-items" in page


def test_an_open_alert_is_on_every_page_a_manager_opens(client):
    from reviewapp.monitoring.models import SystemAlert

    alert = SystemAlert.objects.create(
        key="no-worker",
        kind="no_worker",
        message="No Celery worker is reporting: queued work is not being done.",
        raised_at=timezone.now(),
    )
    client.force_login(make_user(Role.MANAGER))
    page = client.get("/").content.decode()
    assert "No Celery worker is reporting" in page and 'href="/monitoring/system/"' in page
    client.force_login(make_user(Role.REVIEWER))
    assert "No Celery worker" not in client.get("/").content.decode()
    alert.cleared_at = timezone.now()
    alert.save()
    client.force_login(make_user(Role.ADMIN))
    assert "No Celery worker" not in client.get("/").content.decode()
