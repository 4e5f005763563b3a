"""Single sign-on against a real OpenID Connect provider (oidc-provider-mock) on 127.0.0.1.

The provider listens before ``run_server_in_thread`` returns, so nothing waits on it.
"""

from urllib.parse import urlsplit

import pytest
import requests
from oidc_provider_mock import run_server_in_thread

from deployments.models import UseCaseMembership
from reviewapp.core.roles import Role, user_roles
from tests.factories import make_use_case

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def provider():
    with run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def sso(settings, provider):
    settings.OIDC_ENABLED = True
    settings.OIDC_RP_CLIENT_ID = "review-app"
    settings.OIDC_RP_CLIENT_SECRET = "s3cret"
    settings.OIDC_PROVIDER_NAME = "Acme ID"
    settings.OIDC_VERIFY_KID = False  # the mock signs with its one key and names no "kid"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{provider}/oauth2/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{provider}/oauth2/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{provider}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{provider}/jwks"
    settings.OIDC_OP_LOGOUT_ENDPOINT = f"{provider}/oauth2/end_session"
    settings.AUTHENTICATION_BACKENDS = [
        "deployments.oidc.GroupClaimsBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    return provider


def sign_in(client, provider, *, sub: str, groups: list[str]):
    """The whole round trip: app → provider (who signs in as ``sub``) → app's callback."""
    response = requests.put(
        f"{provider}/users/{sub}", json={"email": f"{sub}@acme.test", "groups": groups}
    )
    assert response.status_code == 204
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302 and start["Location"].startswith(provider)
    answer = requests.post(start["Location"], data={"sub": sub}, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    return client.get(f"{back.path}?{back.query}")


def test_the_manager_group_signs_in_as_a_manager_of_the_named_use_case(client, sso):
    use_case = make_use_case(slug="invoices")
    assert "Sign in with Acme ID" in client.get("/accounts/login/").content.decode()

    response = sign_in(
        client, sso, sub="maria", groups=["reviewapp:manager", "reviewapp:use-case:invoices"]
    )
    assert response.status_code == 302 and response["Location"] == "/"
    user = response.wsgi_request.user
    assert user.is_authenticated and user.email == "maria@acme.test"
    assert user_roles(user) == {Role.MANAGER}
    assert UseCaseMembership.objects.filter(user=user, use_case=use_case).exists()
    assert not user.has_usable_password()
    assert client.get("/control/").status_code in (200, 302)


def test_someone_without_the_apps_groups_is_refused_kindly(client, sso):
    response = sign_in(client, sso, sub="outsider", groups=["finance"])
    assert response["Location"] == "/accounts/refused/"
    page = client.get("/accounts/refused/")
    assert page.status_code == 403
    assert "none of your groups gives access" in page.content.decode()
    assert client.get("/tokens/").status_code == 302  # not signed in


def test_roles_follow_the_groups_at_the_next_sign_in(client, sso):
    make_use_case(slug="invoices")
    make_use_case(slug="claims")
    sign_in(client, sso, sub="rui", groups=["reviewapp:manager", "reviewapp:use-case:invoices"])
    client.post("/accounts/logout/")
    response = sign_in(
        client, sso, sub="rui", groups=["reviewapp:reviewer", "reviewapp:use-case:claims"]
    )
    user = response.wsgi_request.user
    user._review_roles = None
    assert user_roles(user) == {Role.REVIEWER}
    slugs = set(
        UseCaseMembership.objects.filter(user=user).values_list("use_case__slug", flat=True)
    )
    assert slugs == {"claims"}


def test_sign_out_ends_the_session_and_the_providers(client, sso):
    sign_in(client, sso, sub="ola", groups=["reviewapp:reviewer"])
    assert client.get("/tokens/").status_code == 200
    response = client.post("/accounts/logout/")
    assert response["Location"].startswith(f"{sso}/oauth2/end_session?")
    assert "post_logout_redirect_uri=" in response["Location"]
    assert client.get("/tokens/").status_code == 302


def test_without_configuration_there_is_no_single_sign_on(client):
    assert "Sign in with" not in client.get("/accounts/login/").content.decode()
    assert client.get("/oidc/authenticate/").status_code == 404
