"""When the broker is down after the items are committed, ingestion still answers 2xx: the
items are stored, the failure to queue is logged, and the sweeper scores them later. When it
hangs, the request waits one socket timeout, no more."""

import logging

import pytest

from reviewapp.celery import app as celery_app
from reviewapp.reviews.models import Item
from reviewapp.reviews.services.scoring import unscored_sweep
from tests.factories import classifier_bytes, invoice, make_use_case, register_model
from tests.hung_server import HungServer

DEAD_BROKER = "redis://127.0.0.1:9/0"  # the discard port: nothing listens there


@pytest.fixture
def broker_down(monkeypatch):
    """Publishing goes to a real broker address with nothing listening."""
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    saved = {
        key: celery_app.conf[key]
        for key in ("broker_url", "task_always_eager", "broker_connection_timeout")
    }
    celery_app.conf.update(
        broker_url=DEAD_BROKER, task_always_eager=False, broker_connection_timeout=1
    )
    _connections_reset()
    yield
    celery_app.conf.update(saved)
    _connections_reset()


def _connections_reset() -> None:
    """Pools are built from ``broker_url`` on first use: drop them (as Celery does after a
    fork) so the next publish connects to the configured broker."""
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.mark.django_db(transaction=True)
def test_batch_is_accepted_when_the_broker_is_down_and_the_sweeper_scores_it(
    api, manager, broker_down, caplog
):
    use_case = make_use_case(members=[manager], level="partial", actor=manager)
    register_model(use_case, classifier_bytes())
    rows = [invoice(n) for n in range(5)]

    with caplog.at_level(logging.ERROR, logger="reviewapp.celery"):
        response = api(manager).post(
            f"/api/v1/use-cases/{use_case.slug}/items/batch/", {"items": rows}, format="json"
        )

    assert response.status_code == 202, response.content
    assert Item.objects.filter(use_case=use_case, status=Item.Status.PENDING).count() == 5
    assert "left to the sweeper" in caplog.text

    celery_app.conf.task_always_eager = True  # the broker is back
    assert unscored_sweep(older_than_seconds=0)["pending"] == 5
    assert not Item.objects.filter(use_case=use_case, status=Item.Status.PENDING).exists()


@pytest.fixture
def broker_hung(monkeypatch, settings):
    """Publishing goes to a broker that accepts connections and never answers."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    broker = HungServer()
    settings.BROKER_SOCKET_TIMEOUT = 0.3
    keys = ("broker_url", "task_always_eager", "broker_transport_options")
    saved = {key: celery_app.conf[key] for key in keys}
    celery_app.conf.update(
        broker_url=broker.url,
        task_always_eager=False,
        broker_transport_options={"socket_timeout": 0.3, "socket_connect_timeout": 0.3},
    )
    _connections_reset()
    yield broker
    celery_app.conf.update(saved)
    _connections_reset()
    broker.close()


@pytest.mark.django_db(transaction=True)
def test_a_hung_broker_holds_the_request_one_socket_timeout_not_one_per_retry(
    api, manager, broker_hung, caplog
):
    use_case = make_use_case(members=[manager], level="partial", actor=manager)
    register_model(use_case, classifier_bytes())

    with caplog.at_level(logging.ERROR, logger="reviewapp.celery"):
        response = api(manager).post(
            f"/api/v1/use-cases/{use_case.slug}/items/batch/",
            {"items": [invoice(n) for n in range(5)]},
            format="json",
        )

    assert response.status_code == 202, response.content
    assert "left to the sweeper" in caplog.text
    # One attempt, given up after its socket timeout: kombu's retries would have reconnected
    # three more times, each waiting out a timeout of its own (some 25 s at the default 5 s).
    assert len(broker_hung.accepted) == 1


def test_a_publish_from_a_worker_gives_up_after_one_socket_timeout(broker_hung):
    """The sweeper and the webhook fan-out publish with a plain ``delay`` from a worker: on a
    hung broker that fails after one attempt too, instead of four socket timeouts."""
    from reviewapp.reviews.tasks import score_items

    with pytest.raises(Exception):  # noqa: B017 - kombu's error for a broker that times out
        score_items.delay(item_ids=[1])

    assert len(broker_hung.accepted) == 1
