"""Webhooks end to end in process: registering, signed deliveries, retries, safe targets."""

import threading
import time

import pytest
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from deployments.services.policies import policy_change
from reviewapp.core.events import events_behind_horizon, events_record
from reviewapp.core.roles import Role
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from reviewapp.webhooks.models import Delivery, Endpoint
from reviewapp.webhooks.services import delivery_attempt, events_fanout
from reviewapp.webhooks.tasks import fanout, sweep
from tests.factories import (
    constant_classifier_bytes,
    make_use_case,
    make_user,
    register_model,
    send_items,
)
from tests.waiting import wait_for
from tests.webhooks.receiver import Listener, start_receiver

# Committed for real: events fan out after commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0, 0, 0, 0, 0, 0]  # every retry due at once
    server, stop = start_receiver()
    yield server
    stop()


@pytest.fixture
def world():
    manager = make_user(Role.MANAGER, "mona")
    reviewer = make_user(Role.REVIEWER, "rita")
    use_case = make_use_case(
        members=[manager, reviewer],
        actor=manager,
        level="partial",
        confidence_threshold=0.7,
        audit_rate=0,
    )
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    return use_case, manager, reviewer


@transaction.atomic
def event_record_many(use_case, count: int) -> None:
    events_record(
        type="outcome.decided",
        use_case_id=use_case.pk,
        datas=[{"external_id": f"old-{n}"} for n in range(count)],
    )


def register(api, user, url, events=("outcome.decided",), **extra):
    return api(user).post(
        "/api/v1/webhooks/", {"url": url, "events": list(events), **extra}, format="json"
    )


def verified(receiver, secret) -> list[dict]:
    hook = Webhook(secret)
    return [hook.verify(r.body, r.headers) for r in receiver.ok()]


def drain(until=None, seconds: float = 30) -> None:
    """What the beat does: sweep until nothing is due (and, given ``until``, until it holds: on
    PostgreSQL other transactions may hold the outbox's horizon back a moment)."""
    deadline = time.monotonic() + seconds
    while True:
        due = sweep()
        if (until is None or until()) and not due:
            return
        if time.monotonic() > deadline:
            return
        time.sleep(0.05 if due else 0.2)


def test_model_and_human_outcomes_arrive_signed_once_each(api, world, receiver):
    use_case, manager, reviewer = world
    created = register(api, manager, receiver.url, use_cases=[use_case.slug])
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in api(manager).get(f"/api/v1/webhooks/{created.json()['id']}/").json()

    send_items(use_case, range(2))  # the model decides
    policy_change(
        use_case=use_case, actor=manager, changes={"confidence_threshold": 0.9}, reason="stricter"
    )
    send_items(use_case, [2])
    with transaction.atomic():
        task = review_task_claim(use_case=use_case, user=reviewer)
    review_task_decide(task=task, user=reviewer, label="travel")
    drain(until=lambda: len(receiver.ok()) == 3)

    # Deliveries are concurrent and retried: their order is not promised (the feed's is).
    messages = sorted(verified(receiver, secret), key=lambda m: m["data"]["external_id"])
    assert [(m["type"], m["data"]["external_id"]) for m in messages] == [
        ("outcome.decided", "inv-0"),
        ("outcome.decided", "inv-1"),
        ("outcome.decided", "inv-2"),
    ]
    assert messages[2]["data"]["decision"]["by"] == "rita"
    ids = [r.headers["webhook-id"] for r in receiver.ok()]
    assert len(set(ids)) == 3
    deliveries = api(manager).get(f"/api/v1/webhooks/{created.json()['id']}/deliveries/").json()
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert all(d["response_code"] == 204 and d["attempts"] == 1 for d in deliveries)


def test_a_batch_of_deliveries_keeps_its_connections_alive(api, world, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_DELIVERY_CONCURRENCY = 2
    server, stop = start_receiver(keep_alive=True)
    # Each answer waits for a second post, so both senders are always busy: without the
    # gate one sender could post all six before the other starts, whatever the machine.
    server.gate = threading.Barrier(2, timeout=20)
    try:
        use_case, manager, _ = world
        secret = register(api, manager, server.url).json()["secret"]
        with transaction.atomic():  # one commit: the fan-out hands them out in one batch
            send_items(use_case, range(6))
        drain(until=lambda: len(server.ok()) == 6)
        assert len(verified(server, secret)) == 6
        # Two posts in flight at a time, each sender on one kept-alive connection.
        assert len({r.peer for r in server.received}) == 2
    finally:
        stop()


def test_the_first_endpoint_does_not_wait_for_the_history_before_it(
    api, world, receiver, monkeypatch
):
    """Events from before any endpoint are skipped in one step, not read batch after batch."""
    use_case, manager, _ = world
    monkeypatch.setattr(fanout, "delay", lambda: None)  # this test fans out by hand
    event_record_many(use_case, 30)  # history no endpoint was there to hear
    register(api, manager, receiver.url)
    send_items(use_case, [99])
    # On PostgreSQL an older transaction anywhere in the cluster hides the new event a moment.
    assert wait_for(lambda: not events_behind_horizon(), 60)
    fanned = events_fanout(batch=10)
    assert Delivery.objects.filter(pk__in=fanned.delivery_ids).count() == 1
    assert events_fanout(batch=10).events_read == 0


def test_a_new_endpoint_hears_the_next_commit_without_waiting_for_the_sweep(
    api, world, receiver, monkeypatch
):
    from reviewapp.webhooks import tasks

    use_case, manager, _ = world
    send_items(use_case, [0])  # no endpoint yet: the commit marks that none needs a fan-out
    register(api, manager, receiver.url)  # which registering clears
    fanouts = []
    read_all = tasks._fanout_all
    monkeypatch.setattr(tasks, "_fanout_all", lambda: fanouts.append(1) or read_all())
    send_items(use_case, [1])
    assert fanouts, "the commit queued no fan-out"
    # Delivered in the commit's wake. On PostgreSQL an older transaction anywhere in the cluster
    # (another test, another database) can hide the event from that fan-out; a worker's then
    # looks again after FANOUT_RECHECK_SECONDS, which eager tasks do not schedule: do it here.
    deadline = time.monotonic() + 30
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.1)
        if not Delivery.objects.exists():
            fanout()
    assert [r.status for r in receiver.received] == [204]


def test_a_batch_posts_several_deliveries_at_once(api, world, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_DELIVERY_CONCURRENCY = 4
    server, stop = start_receiver(keep_alive=True)
    server.gate = threading.Barrier(4, timeout=20)  # answers only once four are waiting
    try:
        use_case, manager, _ = world
        register(api, manager, server.url)
        with transaction.atomic():
            send_items(use_case, range(4))
        drain(until=lambda: len(server.received) >= 4)
        assert [r.status for r in server.received] == [204] * 4
        assert Delivery.objects.filter(state="delivered").count() == 4
    finally:
        stop()


def test_an_answer_over_the_size_cap_is_cut_and_the_next_delivery_still_goes(api, world, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_MAX_RESPONSE_BYTES = 1024
    settings.WEBHOOK_DELIVERY_CONCURRENCY = 1  # one sender: it would reuse a half-read answer
    server, stop = start_receiver(keep_alive=True)
    server.answer, server.answer_body = 200, b"x" * 200_000  # (a 204 has no body)
    try:
        use_case, manager, _ = world
        register(api, manager, server.url)
        with transaction.atomic():
            send_items(use_case, range(3))
        drain(until=lambda: len(server.ok()) == 3)
        assert Delivery.objects.filter(state="delivered").count() == 3
        # The cut answer's connection is dropped, not reused half-read.
        assert len({r.peer for r in server.received}) == 3
    finally:
        stop()


def test_a_receiver_that_fails_five_times_then_recovers_gets_every_event(api, world, receiver):
    use_case, manager, _ = world
    receiver.fail_first = 5
    secret = register(api, manager, receiver.url).json()["secret"]
    send_items(use_case, range(3))
    drain(until=lambda: len(receiver.ok()) == 3)
    assert sorted(m["data"]["external_id"] for m in verified(receiver, secret)) == [
        "inv-0",
        "inv-1",
        "inv-2",
    ]
    # Retries carried the same webhook-id as the first attempt.
    by_id: dict[str, list[int]] = {}
    for request in receiver.received:
        by_id.setdefault(request.headers["webhook-id"], []).append(request.status)
    assert len(by_id) == 3 and all(statuses[-1] == 204 for statuses in by_id.values())
    assert sum(len(s) for s in by_id.values()) == 8
    assert Endpoint.objects.get().paused_at is None


def test_an_endpoint_failing_through_the_whole_schedule_is_paused(api, world, receiver, settings):
    use_case, manager, _ = world
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0]
    receiver.fail_first = 1000
    created = register(api, manager, receiver.url).json()
    send_items(use_case, [1])
    drain(until=lambda: Delivery.objects.filter(state="failed").exists())
    assert len(receiver.received) == 3  # the first attempt and two retries
    delivery = Delivery.objects.get()
    assert delivery.state == "failed" and delivery.last_status_code == 500
    body = api(manager).get(f"/api/v1/webhooks/{created['id']}/").json()
    assert body["paused"] is not None and "Paused" in body["paused"]["reason"]

    receiver.fail_first = 0
    send_items(use_case, [2])  # paused: nothing new goes out, but it is kept for the resume
    drain()
    assert len(receiver.received) == 3
    retried = api(manager).post(f"/api/v1/webhooks/{created['id']}/deliveries/{delivery.pk}/retry/")
    assert retried.status_code == 202
    api(manager).patch(f"/api/v1/webhooks/{created['id']}/", {"active": True}, format="json")
    drain(until=lambda: len(receiver.ok()) == 2)
    assert sorted(m["data"]["external_id"] for m in verified(receiver, created["secret"])) == [
        "inv-1",
        "inv-2",
    ]


def test_a_paused_endpoint_is_announced_on_every_page_its_manager_opens(
    api, world, receiver, client
):
    use_case, manager, reviewer = world
    created = register(api, manager, receiver.url).json()
    Endpoint.objects.filter(pk=created["id"]).update(
        paused_at=timezone.now(), paused_reason="Paused after failing since yesterday"
    )
    client.force_login(manager)
    page = client.get("/").content.decode()
    assert "A webhook endpoint is paused" in page and 'href="/webhooks/"' in page
    client.force_login(reviewer)
    assert "webhook endpoint" not in client.get("/").content.decode()
    api(manager).patch(f"/api/v1/webhooks/{created['id']}/", {"active": True}, format="json")
    client.force_login(manager)
    assert "webhook endpoint is paused" not in client.get("/").content.decode()


def test_the_test_button_and_a_rotated_secret(api, world, receiver):
    _, manager, _ = world
    created = register(api, manager, receiver.url).json()
    rotated = api(manager).post(f"/api/v1/webhooks/{created['id']}/secret/").json()["secret"]
    assert rotated != created["secret"]
    sent = api(manager).post(f"/api/v1/webhooks/{created['id']}/test/")
    assert sent.status_code == 202
    assert [m["type"] for m in verified(receiver, rotated)] == ["webhook.test"]


def test_deleting_an_endpoint_stops_its_pending_deliveries(api, world, receiver, settings):
    use_case, manager, _ = world
    settings.WEBHOOK_RETRY_SCHEDULE = [3600]
    receiver.fail_first = 1
    created = register(api, manager, receiver.url).json()
    send_items(use_case, [1])  # the first attempt fails; a retry is pending
    drain(until=lambda: receiver.received)
    assert len(receiver.received) == 1
    assert Delivery.objects.get().state == "pending"
    assert api(manager).delete(f"/api/v1/webhooks/{created['id']}/").status_code == 204
    # Whatever the delete left behind is due now, as it would be an hour later.
    Delivery.objects.update(next_attempt_at=timezone.now())
    drain()
    assert len(receiver.received) == 1
    assert not Delivery.objects.filter(state="pending").exists()


def test_redirects_are_not_followed(api, world, receiver):
    use_case, manager, _ = world
    other, stop = start_receiver()
    try:
        receiver.answer, receiver.location = 302, other.url
        register(api, manager, receiver.url)
        send_items(use_case, [1])
        drain(until=lambda: receiver.received)
        delivery = Delivery.objects.get()
        assert delivery.last_status_code == 302 and "redirects" in delivery.last_error
        assert other.received == []
    finally:
        stop()


def test_a_loopback_target_off_the_allow_list_is_refused_and_never_connected(
    api, world, receiver, settings
):
    use_case, manager, _ = world
    listener = Listener("127.0.0.2")
    try:
        url = f"http://127.0.0.2:{listener.port}/hook"
        refused = register(api, manager, url)
        assert refused.status_code == 400
        assert "loopback" in refused.json()["url"][0]

        # Allowed when registered, off the list by the time of delivery: checked again then.
        settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1", "127.0.0.2"]
        assert register(api, manager, url).status_code == 201
        settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
        send_items(use_case, [1])
        drain(until=lambda: Delivery.objects.filter(attempts__gt=0).exists())
        delivery = Delivery.objects.order_by("id").first()
        assert delivery.last_error.startswith("refused:") and delivery.last_status_code is None
        assert listener.connections == 0
    finally:
        listener.stop()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://127.0.0.1/x"}, "url"),
        ({"url": "http://127.0.0.1/" + "a" * 2000}, "url"),
        ({"url": "http://10.1.2.3/hook"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": "http://[::1]:8000/"}, "url"),
        ({"events": ["outcome.decided", "item.deleted"]}, "events"),
        ({"events": []}, "events"),
        ({"use_cases": ["not-mine"]}, "use_cases"),
        ({"secret": "whsec_mine"}, "secret"),
    ],
)
def test_bad_input_is_400_naming_the_field(api, world, receiver, body, field):
    _, manager, _ = world
    data = {"url": receiver.url, "events": ["outcome.decided"], **body}
    response = api(manager).post("/api/v1/webhooks/", data, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_a_use_case_the_manager_is_not_a_member_of_is_refused(api, world, receiver):
    use_case, *_ = world
    outsider = make_user(Role.MANAGER)
    response = register(api, outsider, receiver.url, use_cases=[use_case.slug])
    assert response.status_code == 400 and "use_cases" in response.json()


def test_an_endpoint_is_invisible_to_other_managers(api, world, receiver):
    _, manager, _ = world
    created = register(api, manager, receiver.url).json()
    other = make_user(Role.MANAGER)
    assert api(other).get(f"/api/v1/webhooks/{created['id']}/").status_code == 404
    assert api(other).get("/api/v1/webhooks/").json() == []


def test_delivery_attempt_is_a_no_op_for_an_unknown_delivery():
    assert delivery_attempt(delivery_id=999_999) is None


def test_a_fan_out_that_began_with_events_hidden_looks_again(monkeypatch):
    """An event hidden by an older transaction when the fan-out read, and readable by the time
    it ended: asked only afterwards, nothing would look hidden and the event would wait for the
    sweep. The worker looks again shortly."""
    from reviewapp.webhooks import tasks

    read = []  # hidden until the read, readable once it has run
    monkeypatch.setattr(tasks, "events_behind_horizon", lambda: not read)
    monkeypatch.setattr(tasks, "_fanout_all", lambda: read.append(1) or 0)
    rechecks = []
    monkeypatch.setattr(tasks.fanout, "apply_async", lambda **kwargs: rechecks.append(kwargs))
    tasks.fanout.app.conf.task_always_eager = False  # as on a worker (set back for every test)
    try:
        tasks.fanout()
    finally:
        tasks.fanout.app.conf.task_always_eager = True
    assert rechecks == [{"countdown": tasks.FANOUT_RECHECK_SECONDS}]
