"""Sign-in is throttled after repeated failures; ingestion is rate-limited per caller."""

import pytest
from django.core.cache import cache

from reviewapp.core.roles import Role
from tests.factories import invoice, make_use_case, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def sign_in(client, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def test_sign_in_is_refused_after_the_failure_limit_even_with_the_right_password(client, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    user = make_user(Role.REVIEWER)
    for _ in range(3):
        assert sign_in(client, user.username, "wrong").status_code == 200

    refused = sign_in(client, user.username, "test-pass-123")

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == settings.LOGIN_FAILURE_WINDOW_SECONDS
    assert "Too many failed sign-ins" in refused.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_limit_is_per_username_and_address(client, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    user = make_user(Role.REVIEWER)
    other = make_user(Role.REVIEWER)
    for _ in range(2):
        sign_in(client, user.username, "wrong", ip="10.0.0.1")

    assert sign_in(client, user.username, "test-pass-123", ip="10.0.0.2").status_code == 302
    client.logout()
    assert sign_in(client, other.username, "test-pass-123", ip="10.0.0.1").status_code == 302


def test_a_successful_sign_in_resets_the_count(client, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    user = make_user(Role.REVIEWER)
    sign_in(client, user.username, "wrong")
    assert sign_in(client, user.username, "test-pass-123").status_code == 302
    client.logout()

    sign_in(client, user.username, "wrong")
    assert sign_in(client, user.username, "test-pass-123").status_code == 302


def test_ingest_is_rate_limited_per_token_with_retry_after(api, settings):
    settings.INGEST_RATE_LIMIT = "3/minute"
    caller = make_user(Role.INTEGRATION)
    other = make_user(Role.INTEGRATION)
    use_case = make_use_case(members=[caller, other])
    url = f"/api/v1/use-cases/{use_case.slug}/items/"
    client = api(caller)
    for n in range(3):
        assert client.post(url, invoice(n), format="json").status_code == 201

    refused = client.post(url, invoice(3), format="json")
    batch = client.post(f"{url}batch/", {"items": [invoice(4)]}, format="json")

    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "throttled" in refused.json()["detail"]
    assert batch.status_code == 429
    assert api(other).post(url, invoice(5), format="json").status_code == 201
    assert not use_case.items.filter(external_id__in=["inv-3", "inv-4"]).exists()
