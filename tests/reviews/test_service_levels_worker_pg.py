"""An SLA breach end to end with a real Celery worker on Redis and PostgreSQL: items sent with a
due time a moment away are noted late by checks racing in the worker (as the beat would queue
them), recorded as one ``queue.sla_breached`` event and delivered to a subscribed endpoint."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from reviewapp.core.models import Event
from reviewapp.core.roles import Role
from reviewapp.reviews.models import ReviewTask
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from reviewapp.reviews.services.service_levels import QUEUE_SLA_BREACHED
from reviewapp.reviews.tasks import check_service_levels
from tests.factories import invoice, make_use_case, make_user
from tests.reviews.test_worker_pg import worker  # noqa: F401 (a fixture)
from tests.waiting import wait_for
from tests.webhooks.receiver import start_receiver

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("celery-worker"),
]


@pytest.fixture
def local_receivers(monkeypatch, settings):
    """A local receiver allowed, here and in the worker (which reads the environment when it
    starts, so this fixture comes before ``worker``)."""
    monkeypatch.setenv("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


@pytest.fixture
def receiver():
    server, stop = start_receiver()
    yield server
    stop()


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_a_worker_notes_a_breach_once_and_delivers_it(
    api,
    local_receivers,
    receiver,
    worker,  # noqa: F811 (the fixture imported above)
):
    manager, caller, reviewer = (
        make_user(Role.MANAGER),
        make_user(Role.INTEGRATION),
        make_user(Role.REVIEWER),
    )
    use_case = make_use_case(
        members=[manager, caller, reviewer], actor=manager, level="human_only", slug="invoices"
    )
    created = api(manager).post(
        "/api/v1/webhooks/",
        {"url": receiver.url, "events": [QUEUE_SLA_BREACHED], "use_cases": ["invoices"]},
        format="json",
    )
    assert created.status_code == 201, created.json()

    soon = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    items = [
        # Already late when sent, and decided before any check: it never breaches.
        {**invoice(0), "due_at": _z(soon - timedelta(minutes=5))},
        {**invoice(1), "due_at": _z(soon)},
        {**invoice(2), "due_at": _z(soon)},
        {**invoice(3), "due_at": _z(soon + timedelta(days=1))},
    ]
    for body in items:
        sent = api(caller).post("/api/v1/use-cases/invoices/items/", body, format="json")
        assert sent.status_code in (200, 201), sent.json()
    task = review_task_claim(use_case=use_case, user=reviewer)
    assert task.item.external_id == "inv-0"  # the oldest first
    review_task_decide(task=task, user=reviewer, label="office")

    # Wait until the due time has passed (by the database's clock of record: ours).
    assert wait_for(lambda: datetime.now(UTC) > soon + timedelta(milliseconds=200), 30)
    late = ReviewTask.objects.filter(item__external_id__in=["inv-1", "inv-2"])
    # Checks racing in the worker's two processes, as beats on two hosts might queue them.
    # They run until both late tasks are noted (a mark and its event commit together).
    assert wait_for(
        lambda: (
            check_service_levels.delay()
            and not late.filter(past_due_noted_at__isnull=True).exists()
        )
    )

    events = list(Event.objects.filter(type=QUEUE_SLA_BREACHED))
    assert len(events) == 1
    data = events[0].data
    assert data["use_case"] == "invoices" and sorted(data["external_ids"]) == ["inv-1", "inv-2"]
    assert (data["items"], data["more"], data["past_due_total"]) == (2, 0, 2)
    assert data["oldest_due_at"] == _z(soon)
    assert not ReviewTask.objects.filter(
        item__external_id__in=["inv-0", "inv-3"], past_due_noted_at__isnull=False
    ).exists()

    assert wait_for(lambda: receiver.ok())
    bodies = [json.loads(r.body) for r in receiver.ok()]
    assert [(b["type"], b["data"]) for b in bodies] == [(QUEUE_SLA_BREACHED, data)]
