"""Service levels: the periodic check notes each task left open past its due time once, with
one ``queue.sla_breached`` event per use case; the queue's health figures; the past-due banner.

Runs on SQLite and on PostgreSQL; the concurrent checks need PostgreSQL's row locks."""

import json
import threading
from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from deployments.services.use_cases import use_case_update
from reviewapp.core.models import Event
from reviewapp.core.roles import Role
from reviewapp.reviews import tasks
from reviewapp.reviews.models import ReviewTask
from reviewapp.reviews.selectors import queue_health
from reviewapp.reviews.services import service_levels
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from reviewapp.reviews.services.service_levels import QUEUE_SLA_BREACHED, queue_breaches_note
from reviewapp.webhooks.tasks import sweep
from tests.factories import invoice, logged_in_client, make_use_case, make_user
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - timedelta(days=1)


def _z(moment) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _human_queue(*members, slug=None):
    return make_use_case(members=members, level="human_only", slug=slug)


def _send(use_case, n: int, *, at=T0, due_in: timedelta | None = None):
    due_at = (at + due_in).isoformat() if due_in is not None else None
    return item_ingest(use_case=use_case, now=at, due_at=due_at, **invoice(n)).item


def _decide_one(use_case, reviewer, *, at):
    task = review_task_claim(use_case=use_case, user=reviewer, now=at)
    review_task_decide(task=task, user=reviewer, label="office", now=at)
    return task


def _breach_events():
    return {e.data["use_case"]: e.data for e in Event.objects.filter(type=QUEUE_SLA_BREACHED)}


def test_the_check_notes_late_tasks_once_with_one_event_per_use_case():
    reviewer = make_user(Role.REVIEWER)
    invoices = _human_queue(reviewer, slug="invoices")
    claims = _human_queue(reviewer, slug="claims")
    for n in range(3):  # due an hour after arrival, inv-0 earliest
        _send(invoices, n, at=T0 + timedelta(minutes=n), due_in=timedelta(hours=1))
    _send(invoices, 3, due_in=timedelta(hours=5))  # not yet due at the first check
    _send(invoices, 4)  # never due
    decided = _send(claims, 1, due_in=timedelta(minutes=10))  # the first in the queue
    _send(claims, 0, due_in=timedelta(minutes=30))
    # Decided before the check (at T0 + 1 h, 50 minutes late): it never breaches.
    review_task_decide(
        task=review_task_claim(use_case=claims, user=reviewer, now=T0 + timedelta(hours=1)),
        user=reviewer,
        label="office",
        now=T0 + timedelta(hours=1),
    )
    assert decided.tasks.get().state == ReviewTask.State.DONE

    check = T0 + timedelta(hours=2)
    assert queue_breaches_note(now=check) == {"invoices": 3, "claims": 1}
    events = _breach_events()
    assert events["invoices"] == {
        "use_case": "invoices",
        "checked_at": _z(check),
        "items": 3,
        "external_ids": ["inv-0", "inv-1", "inv-2"],
        "more": 0,
        "oldest_due_at": _z(T0 + timedelta(hours=1)),
        "past_due_total": 3,
    }
    assert events["claims"]["external_ids"] == ["inv-0"]
    assert Event.objects.get(type=QUEUE_SLA_BREACHED, use_case=invoices).use_case_id == invoices.pk
    noted = ReviewTask.objects.filter(past_due_noted_at=check)
    assert sorted(noted.values_list("item__external_id", "use_case__slug")) == [
        ("inv-0", "claims"),
        ("inv-0", "invoices"),
        ("inv-1", "invoices"),
        ("inv-2", "invoices"),
    ]

    # The same check again: nothing new, no event.
    assert queue_breaches_note(now=check) == {}
    assert Event.objects.filter(type=QUEUE_SLA_BREACHED).count() == 2

    # Later inv-3 is late too: only it is new, and the total counts the earlier ones.
    later = T0 + timedelta(hours=6)
    assert queue_breaches_note(now=later) == {"invoices": 1}
    latest = Event.objects.filter(type=QUEUE_SLA_BREACHED).latest("id").data
    assert (latest["external_ids"], latest["past_due_total"]) == (["inv-3"], 4)
    assert latest["oldest_due_at"] == _z(T0 + timedelta(hours=5))


def test_an_event_lists_the_first_ids_and_counts_the_rest(monkeypatch):
    monkeypatch.setattr(service_levels, "EXTERNAL_IDS_SHOWN", 2)
    use_case = _human_queue(slug="invoices")
    for n in range(5):
        _send(use_case, n, at=T0 + timedelta(minutes=n), due_in=timedelta(minutes=1))
    assert queue_breaches_note(now=T0 + timedelta(hours=1)) == {"invoices": 5}
    data = _breach_events()["invoices"]
    assert (data["items"], data["external_ids"], data["more"]) == (5, ["inv-0", "inv-1"], 3)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_checks_at_once_never_note_a_task_twice(monkeypatch):
    monkeypatch.setattr(service_levels, "EXTERNAL_IDS_SHOWN", 1000)  # every id listed
    use_case = _human_queue(slug="invoices")
    for n in range(200):
        _send(use_case, n, due_in=timedelta(minutes=1))
    check = T0 + timedelta(hours=1)
    start = threading.Barrier(4)
    results, errors = [], []

    def run():
        try:
            start.wait()
            results.append(queue_breaches_note(now=check))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(r.get("invoices", 0) for r in results) == 200
    listed = [
        external_id
        for event in Event.objects.filter(type=QUEUE_SLA_BREACHED)
        for external_id in event.data["external_ids"]
    ]
    assert sorted(listed) == sorted(f"inv-{n}" for n in range(200))  # each exactly once
    assert not ReviewTask.objects.filter(past_due_noted_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_breach_is_delivered_to_an_endpoint_subscribed_to_it(api, settings):
    from tests.webhooks.receiver import start_receiver

    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    server, stop = start_receiver()
    try:
        manager = make_user(Role.MANAGER)
        use_case = make_use_case(members=[manager], level="human_only", slug="invoices")
        created = api(manager).post(
            "/api/v1/webhooks/",
            {"url": server.url, "events": [QUEUE_SLA_BREACHED], "use_cases": ["invoices"]},
            format="json",
        )
        assert created.status_code == 201, created.json()
        _send(use_case, 7, due_in=timedelta(minutes=5))
        queue_breaches_note(now=T0 + timedelta(hours=1))
        # On PostgreSQL an older transaction anywhere (another test's) hides the new event from
        # the outbox a moment; the beat's sweep hands it out then, as it does here.
        assert wait_for(lambda: sweep() >= 0 and bool(server.ok()), 60)
        bodies = [json.loads(r.body) for r in server.ok()]
        assert [(b["type"], b["data"]["external_ids"]) for b in bodies] == [
            (QUEUE_SLA_BREACHED, ["inv-7"])
        ]
    finally:
        stop()


# --- the figures -------------------------------------------------------------------------------


def test_queue_health_counts_past_due_items_and_forecasts_the_time_to_clear():
    reviewer = make_user(Role.REVIEWER)
    use_case = _human_queue(reviewer)
    for n in range(5):
        _send(use_case, n, due_in=timedelta(hours=1) if n < 3 else timedelta(hours=9))
    _decide_one(use_case, reviewer, at=T0 + timedelta(minutes=30))  # inv-0, before its due time
    _decide_one(use_case, reviewer, at=T0 + timedelta(minutes=40))  # inv-1
    now = T0 + timedelta(hours=2)
    health = queue_health(use_case=use_case, now=now)
    assert health.waiting == 3
    assert health.oldest_waiting_seconds == 2 * 3600
    assert health.past_due_items == 1  # inv-2; inv-3 and inv-4 are due later
    assert health.oldest_due_at == T0 + timedelta(hours=1)
    # Two decisions in the last 24 hours: 1/12 per hour, so 3 tasks take 36 hours.
    assert health.decisions_per_hour == pytest.approx(2 / 24)
    assert health.clear_seconds == pytest.approx(36 * 3600)

    # A day later the decisions fell out of the window: no throughput measured.
    later = queue_health(use_case=use_case, now=T0 + timedelta(hours=30))
    assert (later.past_due_items, later.clear_seconds, later.no_throughput) == (3, None, True)


def test_an_empty_queue_has_nothing_to_clear():
    health = queue_health(use_case=_human_queue(), now=T0)
    assert (health.waiting, health.oldest_waiting_seconds, health.past_due_items) == (0, None, 0)
    assert (health.clear_seconds, health.no_throughput) == (0.0, False)


def test_an_item_with_two_open_tasks_is_past_due_once():
    use_case = _human_queue()
    item = _send(use_case, 0, due_in=timedelta(minutes=1))
    first = item.tasks.get()
    ReviewTask.objects.create(
        item=item,
        use_case=use_case,
        reason="double" if first.reason != "double" else "audit",
        created_at=T0,
        due_at=first.due_at,
    )
    health = queue_health(use_case=use_case, now=T0 + timedelta(hours=1))
    assert (health.waiting, health.past_due_items) == (2, 1)
    assert queue_breaches_note(now=T0 + timedelta(hours=1)) == {use_case.slug: 1}


# --- embedded mode ---------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_web_process_checks_at_most_every_interval(settings, monkeypatch):
    settings.SLA_CHECK_SECONDS = 30
    monkeypatch.setattr(tasks.embedded_check, "last", None)
    use_case = _human_queue(slug="invoices")
    _send(use_case, 0, at=timezone.now() - timedelta(hours=2), due_in=timedelta(hours=1))
    clock = Clock()
    assert tasks.embedded_check.run_if_due(clock=clock)
    assert list(_breach_events()) == ["invoices"]
    clock.now += 29
    assert not tasks.embedded_check.run_if_due(clock=clock)
    clock.now += 2
    assert tasks.embedded_check.run_if_due(clock=clock)
    assert Event.objects.filter(type=QUEUE_SLA_BREACHED).count() == 1  # nothing new


def test_a_response_runs_the_check_in_embedded_mode(settings, monkeypatch, client):
    settings.SLA_CHECK_SECONDS = 30
    monkeypatch.setattr(tasks.embedded_check, "last", None)
    use_case = _human_queue(slug="invoices")
    _send(use_case, 0, at=timezone.now() - timedelta(hours=2), due_in=timedelta(hours=1))
    client.get("/healthz")
    assert list(_breach_events()) == ["invoices"]


# --- the banner and the pages ------------------------------------------------------------------


def test_the_banner_shows_late_queues_to_their_reviewers_and_managers_only():
    reviewer, manager, stranger = (
        make_user(Role.REVIEWER),
        make_user(Role.MANAGER),
        make_user(Role.REVIEWER),
    )
    use_case = make_use_case(members=[reviewer, manager], level="human_only", slug="invoices")
    use_case = use_case_update(use_case=use_case, changes={"turnaround_minutes": 60})
    _send(use_case, 0, at=timezone.now() - timedelta(hours=2))  # due by the turnaround
    _send(use_case, 1, at=timezone.now())

    page = logged_in_client(reviewer).get("/").content.decode()
    assert "Past due:" in page and "Invoice category: 1 item waiting past its due time" in page
    assert 'href="/queue/invoices/"' in page and "control room" not in page.split("Past due:")[1]
    managed = logged_in_client(manager).get("/").content.decode()
    assert "Past due:" in managed and "#queue-health" in managed
    assert "Past due:" not in logged_in_client(stranger).get("/").content.decode()

    # Decided: the banner goes.
    _decide_one(use_case, reviewer, at=timezone.now())
    assert "Past due:" not in logged_in_client(reviewer).get("/").content.decode()


def test_the_queue_page_and_the_control_room_show_the_figures():
    reviewer, manager = make_user(Role.REVIEWER), make_user(Role.MANAGER)
    use_case = make_use_case(members=[reviewer, manager], level="human_only", slug="invoices")
    now = timezone.now()
    _send(use_case, 0, at=now - timedelta(hours=3))  # decided below, the first in the queue
    _send(use_case, 1, at=now - timedelta(hours=3))
    _send(use_case, 2, at=now - timedelta(hours=3), due_in=timedelta(hours=1))
    _decide_one(use_case, reviewer, at=now - timedelta(hours=1))

    stats = logged_in_client(reviewer).get("/queue/invoices/stats/").content.decode()
    assert "<strong>1</strong> past due" in stats
    assert "decisions/h (last 24 h)" in stats

    room = logged_in_client(manager).get("/control/").content.decode()
    assert 'id="queue-health"' in room and "Queues against their due times" in room
    assert 'data-label="Past due"><span class="warn">1</span>' in room


def test_the_forecast_says_when_no_throughput_was_measured():
    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(members=[reviewer], level="human_only", slug="invoices")
    _send(use_case, 0, at=timezone.now())
    stats = logged_in_client(reviewer).get("/queue/invoices/stats/").content.decode()
    assert "no throughput measured" in stats
