"""Webhooks with a real Celery worker on Redis and PostgreSQL: decisions by the model and by
reviewers reach a flaky receiver once each (signed), and the outcome feed agrees."""

import logging

import pytest
from django.core.cache import cache
from standardwebhooks.webhooks import Webhook

from reviewapp.celery import app as celery_app
from reviewapp.core.roles import Role
from reviewapp.webhooks.models import Delivery
from reviewapp.webhooks.tasks import sweep
from tests.factories import constant_classifier_bytes, invoice, make_use_case, make_user
from tests.factories import register_model as model_register
from tests.reviews.test_ingest_broker_down import broker_down  # noqa: F401 (the fixture)
from tests.reviews.test_worker_pg import worker  # noqa: F401 (the fixture)
from tests.waiting import wait_for
from tests.webhooks.receiver import Listener, start_receiver

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def fast_retries(monkeypatch, settings):
    """The worker (a subprocess) and this process: local receivers, retries a moment apart."""
    monkeypatch.setenv("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "0.2,0.2,0.2,0.2,0.2,0.2,0.2")
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_RETRY_SCHEDULE = [0.2] * 7


@pytest.fixture
def receiver():
    server, stop = start_receiver()
    yield server
    stop()


@pytest.mark.worker
@pytest.mark.xdist_group("celery-worker")
def test_a_worker_delivers_every_outcome_once_through_five_failures(
    api,
    fast_retries,
    receiver,
    worker,  # noqa: F811
):
    manager = make_user(Role.MANAGER)
    caller = make_user(Role.INTEGRATION)
    reviewer = make_user(Role.REVIEWER, "rita")
    use_case = make_use_case(
        members=[manager, caller, reviewer],
        actor=manager,
        level="partial",
        confidence_threshold=0.7,
        audit_rate=0,
    )
    model_register(use_case, constant_classifier_bytes("office", 0.8))
    receiver.fail_first = 5
    created = api(manager).post(
        "/api/v1/webhooks/",
        {"url": receiver.url, "events": ["outcome.decided"], "use_cases": [use_case.slug]},
        format="json",
    )
    assert created.status_code == 201
    secret = created.json()["secret"]
    base = f"/api/v1/use-cases/{use_case.slug}"
    for n in range(3):  # the model decides
        assert api(caller).post(f"{base}/items/", invoice(n), format="json").status_code == 201
    api(manager).patch(
        f"{base}/policy/", {"confidence_threshold": 0.9, "reason": "stricter"}, format="json"
    )
    for n in range(3, 5):  # people decide
        assert api(caller).post(f"{base}/items/", invoice(n), format="json").status_code == 201
        task = api(reviewer).post(f"{base}/review/next/").json()
        decided = api(reviewer).post(
            f"/api/v1/review/tasks/{task['task']}/decision/", {"label": "travel"}, format="json"
        )
        assert decided.status_code in (200, 201), decided.content

    def all_five() -> bool:
        sweep.delay()  # what the beat does every few seconds
        return len({r.headers["webhook-id"] for r in receiver.ok()}) == 5

    assert wait_for(all_five), [(r.status, r.headers["webhook-id"]) for r in receiver.received]
    hook = Webhook(secret)
    delivered = [hook.verify(r.body, r.headers) for r in receiver.ok()]
    ids = sorted(m["data"]["external_id"] for m in delivered)
    assert ids == [f"inv-{n}" for n in range(5)], "each outcome delivered exactly once"
    assert sum(1 for r in receiver.received if r.status == 500) == 5
    # The receiver answered before the worker recorded it: wait for the last record.
    assert wait_for(
        lambda: set(Delivery.objects.values_list("state", flat=True)) == {"delivered"}
    ), list(Delivery.objects.values_list("state", "attempts"))

    feed, after = [], ""
    for _ in range(50):
        body = api(caller).get(f"{base}/outcomes/", {"after": after, "wait": 2}).json()
        feed += body["outcomes"]
        after = body["next"]
        if len(feed) >= 5:
            break
    assert sorted(o["external_id"] for o in feed) == ids
    assert api(caller).get(f"{base}/outcomes/", {"after": after}).json()["outcomes"] == []


def test_events_committed_while_the_broker_is_down_are_sent_by_the_sweep(
    api,
    fast_retries,
    receiver,
    broker_down,  # noqa: F811
    caplog,
):
    cache.clear()  # no fan-out is waiting in the queue
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(members=[manager], actor=manager)
    api(manager).post(
        "/api/v1/webhooks/",
        {"url": receiver.url, "events": ["policy.changed"]},
        format="json",
    )
    with caplog.at_level(logging.ERROR):
        changed = api(manager).patch(
            f"/api/v1/use-cases/{use_case.slug}/policy/",
            {"level": "shadow", "reason": "try the model"},
            format="json",
        )
    assert changed.status_code == 200, changed.content
    assert receiver.received == [] and not Delivery.objects.exists()
    assert "left to the sweep" in caplog.text

    celery_app.conf.task_always_eager = True  # the broker is back; the beat runs the sweep
    assert wait_for(lambda: (sweep() or True) and receiver.ok(), seconds=30)
    assert [r.headers["webhook-id"] for r in receiver.ok()] == [
        f"evt_{Delivery.objects.get().event_id}"
    ]


@pytest.mark.worker
@pytest.mark.xdist_group("celery-worker")
def test_a_worker_refuses_a_loopback_target_off_the_allow_list_and_never_connects(
    api,
    fast_retries,
    settings,
    worker,  # noqa: F811
):
    """Registered while 127.0.0.2 was allowed; the worker, which allows only 127.0.0.1, checks
    the address again when it delivers and records the refusal instead of connecting."""
    manager = make_user(Role.MANAGER)
    caller = make_user(Role.INTEGRATION)
    use_case = make_use_case(
        members=[manager, caller],
        actor=manager,
        level="partial",
        confidence_threshold=0.7,
        audit_rate=0,
    )
    model_register(use_case, constant_classifier_bytes("office", 0.8))
    listener = Listener("127.0.0.2")
    try:
        url = f"http://127.0.0.2:{listener.port}/hook"
        body = {"url": url, "events": ["outcome.decided"], "use_cases": [use_case.slug]}
        refused = api(manager).post("/api/v1/webhooks/", body, format="json")
        assert refused.status_code == 400 and "loopback" in refused.json()["url"][0]
        settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1", "127.0.0.2"]
        assert api(manager).post("/api/v1/webhooks/", body, format="json").status_code == 201
        settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
        base = f"/api/v1/use-cases/{use_case.slug}"
        assert api(caller).post(f"{base}/items/", invoice(1), format="json").status_code == 201

        def refused_once() -> bool:
            sweep.delay()
            return Delivery.objects.filter(attempts__gt=0).exists()

        assert wait_for(refused_once)
        delivery = Delivery.objects.get()
        assert delivery.last_error.startswith("refused:"), delivery.last_error
        assert delivery.last_status_code is None
        assert listener.connections == 0
    finally:
        listener.stop()
