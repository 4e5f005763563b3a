"""Sign-in is throttled after repeated failures; ingestion is rate-limited per caller."""

import pytest
from django.core.cache import cache

from reviewapp.core.roles import Role
from tests.factories import invoice, make_use_case, make_user
from tests.hung_server import HungServer

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


def test_a_batch_counts_each_of_its_items_and_a_refused_one_takes_nothing(api, settings):
    settings.INGEST_RATE_LIMIT = "3/minute"
    caller = make_user(Role.INTEGRATION)
    use_case = make_use_case(members=[caller])
    url = f"/api/v1/use-cases/{use_case.slug}/items/"
    client = api(caller)

    too_many = client.post(f"{url}batch/", {"items": [invoice(n) for n in range(4)]}, format="json")
    assert too_many.status_code == 429 and 1 <= int(too_many["Retry-After"]) <= 60
    assert (
        client.post(
            f"{url}batch/", {"items": [invoice(10), invoice(11)]}, format="json"
        ).status_code
        == 202
    )
    assert client.post(url, invoice(12), format="json").status_code == 201
    assert client.post(url, invoice(13), format="json").status_code == 429
    stored = set(use_case.items.values_list("external_id", flat=True))
    assert stored == {"inv-10", "inv-11", "inv-12"}


def test_without_trusted_proxies_a_forwarded_address_changes_nothing(client, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    settings.TRUSTED_PROXIES = []
    user = make_user(Role.REVIEWER)
    for n in range(2):  # an attacker naming a fresh address for every guess
        client.post(
            "/accounts/login/",
            {"username": user.username, "password": "wrong"},
            REMOTE_ADDR="198.51.100.7",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
        )
    refused = client.post(
        "/accounts/login/",
        {"username": user.username, "password": "test-pass-123"},
        REMOTE_ADDR="198.51.100.7",
        HTTP_X_FORWARDED_FOR="203.0.113.99",
    )
    assert refused.status_code == 429


def test_behind_a_trusted_proxy_each_client_has_its_own_count(client, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    user = make_user(Role.REVIEWER)

    def attempt(password: str, forwarded: str, remote: str = "10.1.2.3"):
        return client.post(
            "/accounts/login/",
            {"username": user.username, "password": password},
            REMOTE_ADDR=remote,
            HTTP_X_FORWARDED_FOR=forwarded,
        )

    # The attacker at 203.0.113.5 writes a fake first hop; the proxy appends the real one.
    for _ in range(2):
        attempt("wrong", "192.0.2.1, 203.0.113.5")
    assert attempt("test-pass-123", "192.0.2.2, 203.0.113.5").status_code == 429
    # The user, behind the same proxy (two hops of it), is not locked out by them.
    assert attempt("test-pass-123", "198.51.100.20, 10.9.9.9").status_code == 302
    client.logout()
    # A connection that is not from the proxy cannot borrow an address.
    for _ in range(2):
        attempt("wrong", "198.51.100.20", remote="192.0.2.50")
    assert attempt("test-pass-123", "198.51.100.20").status_code == 302


def test_the_admin_sign_in_is_throttled_with_the_same_count(client, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    admin_user = make_user(Role.ADMIN)
    admin_user.is_staff = True
    admin_user.save()
    for _ in range(2):
        wrong = client.post(
            "/admin/login/",
            {"username": admin_user.username, "password": "wrong"},
            REMOTE_ADDR="10.0.0.1",
        )
        assert wrong.status_code == 200
    sign_in(client, admin_user.username, "wrong")  # the app's sign-in counts too

    refused = client.post(
        "/admin/login/",
        {"username": admin_user.username, "password": "test-pass-123"},
        REMOTE_ADDR="10.0.0.1",
    )
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_admin_sign_in_still_signs_staff_in(client):
    admin_user = make_user(Role.ADMIN)
    admin_user.is_staff = True
    admin_user.save()
    assert "Log in" in client.get("/admin/login/").content.decode()
    answer = client.post(
        "/admin/login/?next=/admin/",
        {"username": admin_user.username, "password": "test-pass-123"},
        REMOTE_ADDR="10.0.0.1",
    )
    assert answer.status_code == 302 and answer["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/login/").status_code == 302


def test_a_hung_cache_lets_sign_in_and_ingestion_through_and_says_so(client, api, settings, caplog):
    """Limits live in the cache; while it hangs they are not kept, and nothing else stops."""
    user = make_user(Role.INTEGRATION)
    use_case = make_use_case(members=[user])
    hung = HungServer()
    kept = settings.CACHES
    settings.CACHES = {  # Django's test signals drop the cache connections made so far
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": hung.url,
            "OPTIONS": {"socket_timeout": 0.2, "socket_connect_timeout": 0.2},
        }
    }
    try:
        with caplog.at_level("WARNING", logger="reviewapp.core.throttles"):
            signed_in = sign_in(client, user.username, "test-pass-123")
            sent = api(user).post(
                f"/api/v1/use-cases/{use_case.slug}/items/", invoice(1), format="json"
            )
    finally:
        settings.CACHES = kept
        hung.close()

    assert signed_in.status_code == 302
    assert sent.status_code == 201, sent.content
    assert "rate limit not kept: the cache is unavailable" in caplog.text
    assert hung.accepted  # the cache was asked, and did not answer
