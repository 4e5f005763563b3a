"""Signing in reads the user's roles with the user: one query a request, and a role taken away
is gone on the next request. Sessions signed in under Django's own backend name stay signed in,
and a wrong password is hashed once, not once per listed backend."""

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.hashers import MD5PasswordHasher
from django.test import Client

from reviewapp.core.roles import Role, role_groups_ensure
from tests.factories import logged_in_client, make_use_case, make_user

pytestmark = pytest.mark.django_db


class CountingHasher(MD5PasswordHasher):
    verified = 0

    def verify(self, password, encoded):
        CountingHasher.verified += 1
        return super().verify(password, encoded)


def test_a_role_taken_away_is_gone_on_the_next_request():
    rosa = make_user(Role.REVIEWER, "rosa")
    use_case = make_use_case(members=[rosa])
    client = logged_in_client(rosa)
    assert client.get(f"/queue/{use_case.slug}/").status_code == 200
    rosa.groups.remove(role_groups_ensure()[Role.REVIEWER])
    assert client.get(f"/queue/{use_case.slug}/").status_code == 403


def test_a_session_signed_in_under_djangos_backend_name_stays_signed_in():
    rosa = make_user(Role.REVIEWER, "rosa")
    use_case = make_use_case(members=[rosa])
    client = Client()
    client.force_login(rosa, backend="django.contrib.auth.backends.ModelBackend")
    assert client.session[BACKEND_SESSION_KEY] == "django.contrib.auth.backends.ModelBackend"
    assert client.get(f"/queue/{use_case.slug}/").status_code == 200


def test_a_wrong_password_is_checked_once_and_a_right_one_signs_in(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    make_user(Role.REVIEWER, "rosa")  # hashed with the counting hasher
    CountingHasher.verified = 0
    client = Client()
    refused = client.post("/accounts/login/", {"username": "rosa", "password": "wrong"})
    assert refused.status_code == 200 and "_auth_user_id" not in client.session
    assert CountingHasher.verified == 1
    signed_in = client.post("/accounts/login/", {"username": "rosa", "password": "test-pass-123"})
    assert signed_in.status_code == 302
    assert client.session[BACKEND_SESSION_KEY] == "reviewapp.core.roles.RolesModelBackend"
