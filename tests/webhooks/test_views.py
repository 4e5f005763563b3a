"""The webhooks page: register, see the secret once, test, retry, delete."""

import pytest

from reviewapp.core.roles import Role
from reviewapp.webhooks.models import Delivery, Endpoint
from tests.factories import logged_in_client, make_user
from tests.webhooks.receiver import start_receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    server, stop = start_receiver()
    yield server
    stop()


def test_a_manager_registers_sees_the_secret_once_and_sends_a_test(receiver):
    client = logged_in_client(make_user(Role.MANAGER))
    response = client.post(
        "/webhooks/new/", {"url": receiver.url, "events": ["outcome.decided", "model.changed"]}
    )
    assert response.status_code == 303
    endpoint = Endpoint.objects.get()
    page = client.get("/webhooks/").content.decode()
    assert endpoint.secret in page and receiver.url in page
    assert endpoint.secret not in client.get("/webhooks/").content.decode()

    assert client.post(f"/webhooks/{endpoint.pk}/test/").status_code == 303
    assert [r.status for r in receiver.received] == [204]
    delivery = Delivery.objects.get()
    page = client.get("/webhooks/").content.decode()
    assert "webhook.test" in page and "204" in page and "delivered" in page

    assert (
        client.post(f"/webhooks/{endpoint.pk}/deliveries/{delivery.pk}/retry/").status_code == 303
    )
    assert len(receiver.received) == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]

    assert client.post(f"/webhooks/{endpoint.pk}/delete/").status_code == 303
    assert not Endpoint.objects.exists()


def test_a_refused_url_is_named_on_the_form(receiver):
    client = logged_in_client(make_user(Role.MANAGER))
    response = client.post(
        "/webhooks/new/", {"url": "http://127.0.0.2/", "events": ["outcome.decided"]}
    )
    assert response.status_code == 422
    assert "loopback" in response.content.decode()
    assert not Endpoint.objects.exists()
