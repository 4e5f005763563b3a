"""Embedded mode (eager Celery, no beat): the web process retries deliveries itself."""

import pytest

from reviewapp.core.roles import Role
from reviewapp.webhooks import tasks
from reviewapp.webhooks.models import Delivery
from reviewapp.webhooks.services import endpoint_create, endpoint_test_send
from tests.factories import make_user
from tests.webhooks.receiver import start_receiver

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_web_process_sweeps_at_most_every_interval(settings, monkeypatch):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_SWEEP_SECONDS = 30
    monkeypatch.setattr(tasks.embedded_sweep, "last", None)
    server, stop = start_receiver()
    try:
        manager = make_user(Role.MANAGER)
        endpoint = endpoint_create(user=manager, url=server.url, events=["outcome.decided"])
        clock = Clock()
        first = endpoint_test_send(endpoint=endpoint, user=manager)
        assert tasks.embedded_sweep.run_if_due(
            clock=clock
        )  # the first response of the process sweeps
        first.refresh_from_db()
        assert first.state == Delivery.State.DELIVERED and len(server.ok()) == 1

        second = endpoint_test_send(endpoint=endpoint, user=manager)
        clock.now += 29
        assert not tasks.embedded_sweep.run_if_due(clock=clock)
        second.refresh_from_db()
        assert second.state == Delivery.State.PENDING and len(server.ok()) == 1

        clock.now += 2  # 31 s after the last sweep
        assert tasks.embedded_sweep.run_if_due(clock=clock)
        second.refresh_from_db()
        assert second.state == Delivery.State.DELIVERED and len(server.ok()) == 2
    finally:
        stop()


def test_a_response_runs_the_sweep_in_embedded_mode(settings, monkeypatch, client):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_SWEEP_SECONDS = 30
    monkeypatch.setattr(tasks.embedded_sweep, "last", None)
    server, stop = start_receiver()
    try:
        manager = make_user(Role.MANAGER)
        endpoint = endpoint_create(user=manager, url=server.url, events=["outcome.decided"])
        delivery = endpoint_test_send(endpoint=endpoint, user=manager)
        client.get("/healthz")
        delivery.refresh_from_db()
        assert delivery.state == Delivery.State.DELIVERED and len(server.ok()) == 1
    finally:
        stop()
