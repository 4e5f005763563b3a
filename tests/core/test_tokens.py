"""Personal API tokens and service accounts: made once, stored hashed, Bearer or Token."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from reviewapp.core.models import ApiToken
from reviewapp.core.roles import Role
from reviewapp.core.tokens import api_token_authenticate, api_token_create
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def signed_in(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def with_header(value: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=value)
    return client


def test_a_token_is_shown_once_and_its_key_is_in_no_column():
    user = make_user(Role.MANAGER)
    response = signed_in(user).post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 201
    key = response.json()["key"]
    assert key.startswith("rvt_")

    listed = signed_in(user).get("/api/v1/tokens/").json()
    assert [t["name"] for t in listed] == ["ci"]
    assert "key" not in listed[0]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")
        cells = [str(cell) for row in cursor.fetchall() for cell in row]
    assert cells and not any(key in cell or key[10:] in cell for cell in cells)


@pytest.mark.parametrize("scheme", ["Bearer", "Token", "bearer"])
def test_bearer_and_token_schemes_both_sign_in(scheme):
    user = make_user(Role.MANAGER)
    _, key = api_token_create(user=user, name="client")
    assert with_header(f"{scheme} {key}").get("/api/v1/use-cases/").status_code == 200


def test_a_legacy_drf_token_still_works_with_either_scheme():
    user = make_user(Role.INTEGRATION)
    legacy = Token.objects.create(user=user)
    assert with_header(f"Token {legacy.key}").get("/api/v1/use-cases/").status_code == 200
    assert with_header(f"Bearer {legacy.key}").get("/api/v1/use-cases/").status_code == 200
    legacy.delete()
    assert with_header(f"Token {legacy.key}").get("/api/v1/use-cases/").status_code == 401


def test_an_expired_token_answers_401():
    user = make_user(Role.MANAGER)
    now = timezone.now()
    _, key = api_token_create(user=user, name="short", expires_at=now + timedelta(hours=1), now=now)
    assert with_header(f"Bearer {key}").get("/api/v1/use-cases/").status_code == 200
    ApiToken.objects.update(expires_at=now - timedelta(seconds=1))
    response = with_header(f"Bearer {key}").get("/api/v1/use-cases/")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_an_expiry_in_the_past_is_refused_naming_the_field():
    user = make_user(Role.MANAGER)
    response = signed_in(user).post(
        "/api/v1/tokens/", {"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, format="json"
    )
    assert response.status_code == 400
    assert "expires_at" in response.json()


def test_a_revoked_token_answers_401():
    user = make_user(Role.MANAGER)
    token, key = api_token_create(user=user, name="gone")
    assert signed_in(user).delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert with_header(f"Bearer {key}").get("/api/v1/use-cases/").status_code == 401
    assert with_header("Bearer rvt_not-a-key").get("/api/v1/use-cases/").status_code == 401


def test_last_used_is_set_at_most_once_a_minute():
    user = make_user(Role.MANAGER)
    token, key = api_token_create(user=user, name="poll")
    assert token.last_used_at is None
    with_header(f"Bearer {key}").get("/api/v1/use-cases/")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None

    api_token_authenticate(key, now=first + timedelta(seconds=30))
    token.refresh_from_db()
    assert token.last_used_at == first
    later = first + timedelta(seconds=61)
    api_token_authenticate(key, now=later)
    token.refresh_from_db()
    assert token.last_used_at == later


def test_a_person_cannot_see_or_revoke_anothers_token():
    alice, bob = make_user(Role.MANAGER), make_user(Role.REVIEWER)
    token, key = api_token_create(user=alice, name="alice's")
    assert signed_in(bob).get("/api/v1/tokens/").json() == []
    assert signed_in(bob).delete(f"/api/v1/tokens/{token.pk}/").status_code == 404
    assert with_header(f"Bearer {key}").get("/api/v1/use-cases/").status_code == 200


def test_admin_makes_a_service_account_and_manages_its_tokens():
    admin, manager = make_user(Role.ADMIN), make_user(Role.MANAGER)
    response = signed_in(admin).post(
        "/api/v1/tokens/", {"name": "ingest", "service_account": "crm-sync"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["user"] == "crm-sync"
    account = ApiToken.objects.get(pk=body["id"]).user
    assert not account.has_usable_password()
    assert account.groups.filter(name=Role.INTEGRATION.value).exists()
    caller = with_header(f"Bearer {body['key']}")
    assert caller.post("/api/v1/use-cases/", {}, format="json").status_code == 403

    assert [t["user"] for t in signed_in(admin).get("/api/v1/tokens/").json()] == ["crm-sync"]
    refused = signed_in(manager).post(
        "/api/v1/tokens/", {"name": "x", "service_account": "other"}, format="json"
    )
    assert refused.status_code == 400
    assert "service_account" in refused.json()
    person = signed_in(admin).post(
        "/api/v1/tokens/", {"name": "x", "service_account": manager.username}, format="json"
    )
    assert person.status_code == 400

    assert signed_in(admin).delete(f"/api/v1/tokens/{body['id']}/").status_code == 204
    assert caller.get("/api/v1/use-cases/").status_code == 401


def test_bad_input_names_the_field():
    user = make_user(Role.REVIEWER)
    client = signed_in(user)
    assert "name" in client.post("/api/v1/tokens/", {}, format="json").json()
    assert (
        "colour" in client.post("/api/v1/tokens/", {"name": "a", "colour": 1}, format="json").json()
    )
    assert client.delete("/api/v1/tokens/abc/").status_code == 404
