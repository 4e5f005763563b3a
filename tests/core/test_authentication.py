"""API callers authenticate with their token under either scheme name."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from reviewapp.core.roles import Role
from tests.factories import make_use_case, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def caller():
    user = make_user(Role.INTEGRATION)
    make_use_case(slug="auth-uc", members=[user])
    return user, Token.objects.create(user=user).key


@pytest.mark.parametrize("scheme", ["Token", "Bearer", "bearer", "TOKEN"])
def test_token_and_bearer_both_work(caller, scheme):
    _, key = caller
    client = APIClient(HTTP_AUTHORIZATION=f"{scheme} {key}")
    response = client.get("/api/v1/use-cases/")
    assert response.status_code == 200
    assert [u["slug"] for u in response.json()] == ["auth-uc"]


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer wrong-key", "Bearer two parts", "Basic dXNlcjpwYXNz", None],
)
def test_anything_else_is_401_and_says_how_to_authenticate(caller, header):
    client = APIClient(**({"HTTP_AUTHORIZATION": header} if header else {}))
    response = client.get("/api/v1/use-cases/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "detail" in response.json()


def test_a_revoked_token_is_refused(caller):
    user, key = caller
    Token.objects.filter(user=user).delete()
    response = APIClient(HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/use-cases/")
    assert response.status_code == 401
